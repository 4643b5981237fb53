<#
.SYNOPSIS
    Rotate the log files of @@service_name_text (logrotate semantics for Windows).

.DESCRIPTION
    For each file in -LogDir matching -Pattern (rotated copies excluded):
      - it is rotated when it is not empty and either older than -MaxAgeDays since its last rotation (or creation)
        or at least -MaxSizeMB in size (0 turns a criterion off);
      - rotation renames it to <name>.<yyyyMMdd-HHmmss>, or with -CopyTruncate copies it there and truncates the
        original in place, so a writer that keeps the file open goes on writing;
      - a file the writer holds without sharing cannot be rotated safely: it is skipped with a warning and nothing
        is lost;
      - rotated files are compressed with Compress-Archive into <rotated>.zip; with -DelayCompress the newest
        rotated file stays uncompressed until the next run; files over 2 GB are never compressed (Compress-Archive
        cannot) and a warning says so;
      - only the -Keep newest rotated files (zipped or not) are kept, older ones are deleted;
      - when anything was rotated, -PostRotate (a program or command name) runs with -PostRotateArgs, through the
        call operator, never through a string evaluation.
    With -Register the script copies itself into an admin-only folder, %ProgramData%\wgobuild\<TaskName> (no
    inherited entries; SYSTEM and Administrators only, owned by Administrators), and registers a daily scheduled task
    at -At, running as SYSTEM, whose command checks the copy's SHA-256 before running it (exit 2 and an error when it
    differs); it rotates nothing. The checkout's dist\powershell is never what SYSTEM runs. A -PostRotate given as
    a path must lie in a folder only admins can change, or the rotation refuses to run it. Every change runs inside
    ShouldProcess, so -WhatIf lists what would happen.
    Copy-truncate caveat: lines written between the last read and the truncation (microseconds) are lost, the same
    as with logrotate's copytruncate; with -CopyTruncate $false nothing is ever lost, but the writer must reopen.
    Rendered by wgobuild from wgobuild.toml.

.NOTES
    Exit codes: 0 done (or nothing to do), 1 failed (the error is printed).
#>
#Requires -Version 5.1
[CmdletBinding(SupportsShouldProcess)]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-AdminOnly',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSAvoidGlobalVars', '',
    Justification = 'LASTEXITCODE is a global automatic variable: resetting it is the only way to clear a native exit code')]
param(
    [string] $LogDir = @@rotate_log_dir,
    [ValidatePattern('^[A-Za-z0-9._*?-]+\z')]
    [string] $Pattern = @@pattern,
    [ValidateRange(0, 36500)]
    [int] $MaxAgeDays = @@max_age_days,
    [ValidateRange(0, 1048576)]
    [int] $MaxSizeMB = @@max_size_mb,
    [ValidateRange(0, 100000)]
    [int] $Keep = @@keep,
    [bool] $DelayCompress = @@delaycompress,
    [bool] $CopyTruncate = @@copytruncate,
    [string] $PostRotate = @@post_rotate,
    [string[]] $PostRotateArgs = @@post_rotate_args,
    [switch] $Register,
    [ValidatePattern('^([01][0-9]|2[0-3]):[0-5][0-9]\z')]
    [string] $At = @@schedule,
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._ -]*\z')]
    [string] $TaskName = @@task_name
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$script:Changes = 0
$CompressLimit = 2147483648  # 2 GB, the most Compress-Archive takes
$Stamp = '\.\d{8}-\d{6}(\.zip)?$'

@@shared_change

@@shared_admin_check

@@shared_admin_only

function Get-Rotated([System.IO.FileInfo] $Log) {
    # Rotated copies of $Log, newest first (the time stamp in the name sorts like the time itself).
    $prefix = [regex]::Escape($Log.Name)
    @(Get-ChildItem -LiteralPath $Log.DirectoryName -File |
        Where-Object { $_.Name -match "^$prefix\.\d{8}-\d{6}(\.zip)?$" } | Sort-Object Name -Descending)
}

function Move-Log([System.IO.FileInfo] $Log, [string] $Target) {
    # Returns $true when rotated; a file held open without sharing is skipped, never half-rotated.
    try {
        if (-not $CopyTruncate) { [System.IO.File]::Move($Log.FullName, $Target); return $true }
        $share = [System.IO.FileShare] 'ReadWrite, Delete'
        $source = [System.IO.File]::Open($Log.FullName, 'Open', 'ReadWrite', $share)
    } catch [System.IO.IOException] {
        Write-Warning "$($Log.FullName) is locked by its writer; skipped, nothing lost ($($_.Exception.Message))"
        return $false
    }
    try {
        $dest = [System.IO.File]::Open($Target, 'CreateNew', 'Write', 'None')
        try { $source.CopyTo($dest); $dest.Flush($true) } finally { $dest.Dispose() }
        $source.SetLength(0)
    } finally { $source.Dispose() }
    return $true
}

function Invoke-Rotate([System.IO.FileInfo] $Log) {
    $rotated = @(Get-Rotated $Log)
    $since = $Log.CreationTime
    if ($rotated.Count) {
        $since = [datetime]::ParseExact($rotated[0].Name.Substring($Log.Name.Length + 1, 15), 'yyyyMMdd-HHmmss', $null)
    }
    $byAge = $MaxAgeDays -gt 0 -and ((Get-Date) - $since).TotalDays -ge $MaxAgeDays
    $bySize = $MaxSizeMB -gt 0 -and $Log.Length -ge ([long] $MaxSizeMB * 1048576)
    if ($Log.Length -eq 0 -or -not ($byAge -or $bySize)) {
        Write-Output "unchanged: $($Log.Name) does not need rotation"
    } else {
        $target = Join-Path $Log.DirectoryName ('{0}.{1:yyyyMMdd-HHmmss}' -f $Log.Name, (Get-Date))
        $how = if ($CopyTruncate) { 'copy and truncate' } else { 'rename' }
        if ($PSCmdlet.ShouldProcess($Log.FullName, "rotate to $target ($how)")) {
            if (Move-Log $Log $target) {
                $script:Changes++
                Write-Output "changed: rotated $($Log.Name) to $target"
            }
        }
    }
    $rotated = @(Get-Rotated $Log)
    $plain = @($rotated | Where-Object { $_.Extension -ne '.zip' })
    if ($DelayCompress -and $plain.Count) { $plain = @($plain | Select-Object -Skip 1) }
    foreach ($file in $plain) {
        if ($file.Length -gt $CompressLimit) {
            Write-Warning "$($file.FullName) is over 2 GB; Compress-Archive cannot take it, left uncompressed"
            continue
        }
        Invoke-Change $file.FullName 'compress' {
            if ($file.Attributes -band [System.IO.FileAttributes]::Hidden) {
                $file.Attributes = $file.Attributes -bxor [System.IO.FileAttributes]::Hidden
            }
            Compress-Archive -LiteralPath $file.FullName -DestinationPath "$($file.FullName).zip" -Force
            Remove-Item -LiteralPath $file.FullName -Force
        }
    }
    foreach ($old in @(Get-Rotated $Log | Select-Object -Skip $Keep)) {
        Invoke-Change $old.FullName "delete (keeping the newest $Keep)" { Remove-Item -LiteralPath $old.FullName -Force }
    }
}

function Register-Rotation {
    $vault = Join-Path ([Environment]::GetFolderPath('CommonApplicationData')) "wgobuild\$TaskName"
    $copy = Join-Path $vault 'rotate-logs.ps1'
    $hash = (Get-FileHash -LiteralPath $PSCommandPath -Algorithm SHA256).Hash
    if (-not (Test-Path -LiteralPath $vault -PathType Container)) {
        Invoke-Change $vault 'create folder' { [System.IO.Directory]::CreateDirectory($vault) | Out-Null }
    }
    if (Test-Path -LiteralPath $vault -PathType Container) {
        $acl = Get-Acl -LiteralPath $vault
        if ($acl.AreAccessRulesProtected -and -not @(Get-WritableBy $vault).Count) {
            Write-Unchanged "$vault is admin-only"
        } else {
            Invoke-Change $vault 'make admin-only (SYSTEM and Administrators)' { Set-AdminOnly $vault }
        }
    }
    $same = (Test-Path -LiteralPath $copy -PathType Leaf) -and
        (Get-FileHash -LiteralPath $copy -Algorithm SHA256).Hash -eq $hash
    if ($same) { Write-Unchanged "$copy is this script (SHA-256 $hash)" }
    else {
        Invoke-Change $copy "copy $PSCommandPath there (SHA-256 $hash)" {
            Copy-Item -LiteralPath $PSCommandPath -Destination $copy -Force
            Assert-AdminOnly $copy 'SYSTEM'
        }
    }
    # The task's command: check the copy's hash, then run it. Encoded, so no quoting survives to be abused.
    $quoted = $copy -replace "'", "''"
    $command = "`$p = '$quoted'; if ((Get-FileHash -LiteralPath `$p -Algorithm SHA256).Hash -ne '$hash') { " +
        "Write-Error ('wgobuild: ' + `$p + ' was changed since it was registered; not run'); exit 2 }; " +
        "& `$p; exit `$LASTEXITCODE"
    $encoded = [Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($command))
    $arguments = "-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand $encoded"
    $exe = Join-Path ([Environment]::SystemDirectory) 'WindowsPowerShell\v1.0\powershell.exe'
    $existing = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    if ($null -ne $existing) {
        $action = $existing.Actions | Select-Object -First 1
        $trigger = $existing.Triggers | Select-Object -First 1
        $when = if ($null -ne $trigger) { ([datetime] $trigger.StartBoundary).ToString('HH:mm') } else { '' }
        if ($action.Execute -eq $exe -and $action.Arguments -eq $arguments -and $when -eq $At) {
            Write-Output "unchanged: scheduled task $TaskName runs $copy (SHA-256 checked) daily at $At"
            return
        }
    }
    Invoke-Change "scheduled task $TaskName" "run $copy (SHA-256 $hash checked first) daily at $At as SYSTEM" {
        $taskAction = New-ScheduledTaskAction -Execute $exe -Argument $arguments
        $taskTrigger = New-ScheduledTaskTrigger -Daily -At ([datetime]::ParseExact($At, 'HH:mm', $null))
        $principal = New-ScheduledTaskPrincipal -UserId 'S-1-5-18' -LogonType ServiceAccount -RunLevel Highest
        $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 2)
        Register-ScheduledTask -TaskName $TaskName -Action $taskAction -Trigger $taskTrigger -Principal $principal `
            -Settings $settings -Force | Out-Null
    }
}

try {
    if ($Register) {
        Register-Rotation
    } else {
        if (-not (Test-Path -LiteralPath $LogDir -PathType Container)) {
            throw "Log folder $LogDir does not exist."
        }
        $before = $script:Changes
        $logs = @(Get-ChildItem -LiteralPath $LogDir -File -Filter $Pattern | Where-Object { $_.Name -notmatch $Stamp })
        foreach ($log in $logs) { Invoke-Rotate $log }
        if ($PostRotate -and $script:Changes -gt $before) {
            if ($PostRotate.Contains('\')) { Assert-AdminOnly $PostRotate 'SYSTEM (the post-rotate command)' }
            Invoke-Change $PostRotate 'run the post-rotate command' {
                $global:LASTEXITCODE = 0
                & $PostRotate @PostRotateArgs
                if ($LASTEXITCODE) { throw "post-rotate command $PostRotate exited with code $LASTEXITCODE" }
            }
        }
    }
    Write-Summary
    exit 0
} catch {
    Write-Error -ErrorRecord $_ -ErrorAction Continue
    exit 1
}
