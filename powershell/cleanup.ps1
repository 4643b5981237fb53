<#
.SYNOPSIS
    Shrink a servercore build stage: component store clean-up and temporary folders.

.DESCRIPTION
    Runs DISM /Online /Cleanup-Image /StartComponentCleanup /ResetBase (superseded components are removed for good;
    updates installed before cannot be uninstalled afterwards) and empties the temporary folders.

    IMPORTANT: run it in the same Dockerfile RUN instruction as the install it cleans up after, for example
        RUN powershell -File C:\install.ps1; powershell -File C:\cleanup.ps1
    A file deleted in a later layer still ships in the earlier layer, so a separate RUN saves nothing. It cannot
    shrink Microsoft's base layers either. nanoserver has no PowerShell and no DISM: use it in servercore stages
    or on a host only. cleanmgr is not a servercore tool, hence DISM.
    Every change runs inside ShouldProcess (-WhatIf lists what would happen). A second run finds the temporary
    folders empty and says so; DISM itself reports when there is nothing left to clean.
    Rendered by wgobuild from wgobuild.toml.

.NOTES
    Exit codes: 0 done (or nothing to do), 1 failed (the error is printed).
#>
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding(SupportsShouldProcess)]
param(
    [bool] $ComponentCleanup = @@component_cleanup,
    [string[]] $TempDirs = @@temp_dirs
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$script:Changes = 0

@@shared_change

try {
    $cbs = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
    if ($ComponentCleanup -and (Test-Path -LiteralPath $cbs)) {
        # DISM /ResetBase with a restart pending fails with 0x800f0806: leave it for after the restart.
        Write-Output "unchanged: component store clean-up skipped, a restart is pending (run again after it)"
    } elseif ($ComponentCleanup) {
        if ($PSCmdlet.ShouldProcess('component store', 'DISM /StartComponentCleanup /ResetBase')) {
            & dism.exe /English /Online /Cleanup-Image /StartComponentCleanup /ResetBase
            if ($LASTEXITCODE -ne 0) { throw "DISM component clean-up failed with exit code $LASTEXITCODE" }
            $script:Changes++
        }
    }
    $folders = @($TempDirs) + @($env:TEMP) | Where-Object { $_ } | Select-Object -Unique
    foreach ($folder in $folders) {
        if (-not (Test-Path -LiteralPath $folder -PathType Container)) {
            Write-Output "unchanged: $folder does not exist"
            continue
        }
        $items = @(Get-ChildItem -LiteralPath $folder -Force -ErrorAction SilentlyContinue)
        if ($items.Count -eq 0) { Write-Output "unchanged: $folder is empty"; continue }
        if ($PSCmdlet.ShouldProcess($folder, "delete $($items.Count) item(s)")) {
            foreach ($item in $items) {
                # A file in use (the running shell's own temp files) is left behind, with a warning.
                try { Remove-Item -LiteralPath $item.FullName -Recurse -Force }
                catch { Write-Warning "could not delete $($item.FullName): $($_.Exception.Message)" }
            }
            $script:Changes++
            Write-Output "changed: emptied $folder"
        }
    }
    Write-Summary 'clean-up step(s) done'
    exit 0
} catch {
    Write-Error -ErrorRecord $_ -ErrorAction Continue
    exit 1
}
