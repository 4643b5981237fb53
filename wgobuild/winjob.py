"""Windows: a job object with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``, so children die with wgobuild.

wgobuild puts its own process into the job, lazily before its first child, and children (and theirs: ``go`` →
``compile``, ``link``) are born inside it, so there is no moment in which a grandchild is outside the job. Only
wgobuild holds the job's handle; when wgobuild ends by any means (Task Manager's "End task" included) Windows closes
the handle and kills every process still in the job. Where this process cannot join a job (Windows before 8 inside
another job that forbids nesting), each child is put into it right after it starts instead (:meth:`Job.adopt`).

The calls go through a ``kernel32`` object (ctypes' WinDLL on Windows) so that the sequence and the structure
layout can be checked on any OS.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9  # JobObjectExtendedLimitInformation
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
CURRENT_PROCESS = -1  # GetCurrentProcess()'s pseudo handle


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_longlong),
        ("PerJobUserTimeLimit", ctypes.c_longlong),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class Kernel32(Protocol):
    """The five kernel32 functions used here (ctypes' ``WinDLL("kernel32")`` on Windows)."""

    def CreateJobObjectW(self, attributes: Any, name: Any) -> int: ...
    def SetInformationJobObject(self, job: int, info_class: int, info: Any, size: int) -> int: ...
    def AssignProcessToJobObject(self, job: int, process: int) -> int: ...
    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int: ...
    def CloseHandle(self, handle: int) -> int: ...


def _kernel32() -> Kernel32:
    dll: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    dll.CreateJobObjectW.restype = ctypes.c_void_p
    dll.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
    dll.SetInformationJobObject.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
    dll.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    dll.OpenProcess.restype = ctypes.c_void_p
    dll.OpenProcess.argtypes = [ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32]
    dll.CloseHandle.argtypes = [ctypes.c_void_p]
    return dll  # type: ignore[no-any-return]


def _last_error() -> int:
    get = getattr(ctypes, "get_last_error", None)
    return int(get()) if get is not None else 0


def kill_on_close_limits() -> JOBOBJECT_EXTENDED_LIMIT_INFORMATION:
    """The limit block handed to ``SetInformationJobObject``: kill every process when the last handle closes."""
    info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    return info


class Job:
    """One kill-on-close job; this process joins it when it can (:attr:`holds_self`)."""

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        self._k = kernel32 if kernel32 is not None else _kernel32()
        handle = self._k.CreateJobObjectW(None, None)
        if not handle:
            raise OSError(f"CreateJobObjectW failed (Windows error {_last_error()})")
        self.handle = int(handle)  # never closed: closing it is what kills the children, at this process's end
        info = kill_on_close_limits()
        if not self._k.SetInformationJobObject(self.handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                                               ctypes.byref(info), ctypes.sizeof(info)):
            raise OSError(f"SetInformationJobObject(KILL_ON_JOB_CLOSE) failed (Windows error {_last_error()})")
        self.holds_self = bool(self._k.AssignProcessToJobObject(self.handle, CURRENT_PROCESS))

    def adopt(self, pid: int) -> bool:
        """Put a started child into the job (only needed when this process is not in it); True on success."""
        if self.holds_self:
            return True
        process = self._k.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not process:
            return False
        try:
            return bool(self._k.AssignProcessToJobObject(self.handle, int(process)))
        finally:
            self._k.CloseHandle(int(process))
