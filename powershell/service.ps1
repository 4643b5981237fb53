<#
.SYNOPSIS
    Install or uninstall @@service_name_text as a Windows service.

.DESCRIPTION
    -Action install (default) creates or updates the service so it matches the settings below: command line, start
    type, display name, description, identity (the virtual account NT SERVICE\<ServiceName>, or a local user that
    harden.ps1 created), failure actions (restart after -RestartDelaySeconds, also when the process exits with a
    non-zero code, not only on crashes), then starts it unless the start type is demand.
    -Action uninstall stops the service (waiting at most -StopTimeoutSeconds, then ending its process) and deletes it.

    The Go binary MUST speak to the service control manager, for example with golang.org/x/sys/windows/svc
    (svc.Run with a handler that answers Stop and Shutdown within -StopTimeoutSeconds). A plain console program is
    killed after about 30 seconds with error 1053 ("The service did not respond to the start or control request in
    a timely fashion").

    For a local-user identity a new random password is generated here, set on the account and given to the
    service control manager; it is never printed or stored. The account also receives the "Log on as a service"
    right. Every change runs inside ShouldProcess (-WhatIf lists what would change); a second run reports each
    setting as unchanged. Rendered by wgobuild from wgobuild.toml.

.NOTES
    Exit codes: 0 done (or nothing to do), 1 failed (the error is printed).
#>
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding(SupportsShouldProcess)]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-Identity',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-FailureAction',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Stop-WithTimeout',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-BinaryHash',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'New-RandomSecret',
    Justification = 'it only makes a random string in memory; nothing on the machine changes')]
param(
    [ValidateSet('install', 'uninstall')]
    [string] $Action = 'install',
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string] $ServiceName = @@service_name,
    [string] $DisplayName = @@display_name,
    [string] $Description = @@description,
    [string] $BinaryPath = @@binary_path,
    [string] $ArgumentLine = @@argument_line,
    [ValidateSet('auto', 'delayed-auto', 'demand')]
    [string] $Start = @@start,
    [ValidateSet('virtual', 'local-user')]
    [string] $Identity = @@identity,
    [ValidatePattern('^\z|^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string] $Account = @@account,
    [ValidateRange(0, 86400)]
    [int] $RestartDelaySeconds = @@restart_delay_s,
    [ValidateRange(1, 3600)]
    [int] $StopTimeoutSeconds = @@stop_timeout_s
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$script:Changes = 0
$ServiceKey = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
$ResetPeriodSeconds = 86400
$Hint1053 = 'If it failed with error 1053 the binary does not talk to the service control manager: use ' +
    'golang.org/x/sys/windows/svc (svc.Run) in the Go program.'

@@shared_change

@@shared_admin_check

function Invoke-Native([string] $Exe, [string[]] $Arguments) {
    # No 2>&1 here: in Windows PowerShell 5.1 redirected native stderr becomes a terminating error under 'Stop'.
    $output = & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed with exit code ${LASTEXITCODE}: $output" }
}

function Get-ServiceInfo { Get-CimInstance -ClassName Win32_Service -Filter "Name = '$ServiceName'" }

@@shared_secret

function Grant-ServiceLogonRight([string] $Sid) {
    $work = Join-Path ([System.IO.Path]::GetTempPath()) ([guid]::NewGuid().ToString())
    [System.IO.Directory]::CreateDirectory($work) | Out-Null
    try {
        $exported = Join-Path $work 'export.inf'
        Invoke-Native 'secedit.exe' @('/export', '/cfg', $exported, '/areas', 'USER_RIGHTS')
        $line = @(Get-Content -LiteralPath $exported | Where-Object { $_ -like 'SeServiceLogonRight*' })
        $current = if ($line.Count) { ($line[0] -split '=', 2)[1].Trim() } else { '' }
        if (($current -split ',') -contains "*$Sid") { return }
        $value = if ($current) { "$current,*$Sid" } else { "*$Sid" }
        $inf = @('[Unicode]', 'Unicode=yes', '[Version]', 'signature="$CHICAGO$"', 'Revision=1', '[Privilege Rights]',
            "SeServiceLogonRight = $value")
        $imported = Join-Path $work 'import.inf'
        Set-Content -LiteralPath $imported -Value $inf -Encoding Unicode
        Invoke-Native 'secedit.exe' @('/configure', '/db', (Join-Path $work 'rights.sdb'), '/cfg', $imported,
            '/areas', 'USER_RIGHTS', '/quiet')
    } finally { Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue }
}

function Set-Identity($Info) {
    if ($Identity -eq 'virtual') {
        $name = "NT SERVICE\$ServiceName"
        if ([string] $Info.StartName -eq $name) { Write-Unchanged "identity $name"; return }
        Invoke-Change $ServiceName "run as $name (virtual account)" {
            Invoke-Native 'sc.exe' @('config', $ServiceName, 'obj=', $name)
        }
        return
    }
    $name = ".\$Account"
    if ([string] $Info.StartName -in @($name, "$env:COMPUTERNAME\$Account")) { Write-Unchanged "identity $name"; return }
    $user = Get-LocalUser -Name $Account -ErrorAction SilentlyContinue
    if ($null -eq $user) { throw "Local user $Account does not exist: run harden.ps1 first." }
    Invoke-Change $ServiceName "run as $name (new random password, not stored)" {
        $secret = New-RandomSecret
        Set-LocalUser -Name $Account -Password $secret
        Grant-ServiceLogonRight $user.SID.Value
        $plain = (New-Object System.Net.NetworkCredential('', $secret)).Password
        try {
            $result = Invoke-CimMethod -InputObject $Info -MethodName Change `
                -Arguments @{ StartName = $name; StartPassword = $plain }
        } finally { $plain = $null }
        if ($result.ReturnValue -ne 0) { throw "Win32_Service.Change failed with code $($result.ReturnValue)" }
    }
}

function Set-FailureAction {
    # Registry layout of SERVICE_FAILURE_ACTIONS: reset period at 0, action count at 12, actions (type, delay) from 20.
    $delay = $RestartDelaySeconds * 1000
    $item = Get-Item -LiteralPath $ServiceKey -ErrorAction SilentlyContinue
    $blob = if ($null -ne $item) { [byte[]] $item.GetValue('FailureActions', $null) } else { $null }
    $flag = if ($null -ne $item) { $item.GetValue('FailureActionsOnNonCrashFailures', 0) } else { 0 }
    $same = $null -ne $blob -and $blob.Length -ge 44 -and [BitConverter]::ToUInt32($blob, 0) -eq $ResetPeriodSeconds -and
        [BitConverter]::ToUInt32($blob, 12) -eq 3
    if ($same) {
        foreach ($i in 0..2) {
            $at = 20 + 8 * $i
            if ([BitConverter]::ToUInt32($blob, $at) -ne 1 -or [BitConverter]::ToUInt32($blob, $at + 4) -ne $delay) {
                $same = $false
            }
        }
    }
    if ($same -and $flag -eq 1) { Write-Unchanged "failure actions: restart after $RestartDelaySeconds s"; return }
    Invoke-Change $ServiceName "restart after $RestartDelaySeconds s on any failure" {
        $actions = (@("restart/$delay") * 3) -join '/'
        Invoke-Native 'sc.exe' @('failure', $ServiceName, 'reset=', "$ResetPeriodSeconds", 'actions=', $actions)
        Invoke-Native 'sc.exe' @('failureflag', $ServiceName, '1')
    }
}

function Stop-WithTimeout {
    $svc = Get-Service -Name $ServiceName
    if ($svc.Status -eq 'Stopped') { return }
    Invoke-Change $ServiceName "stop (at most $StopTimeoutSeconds s)" {
        $svc.Stop()
        try { $svc.WaitForStatus('Stopped', [TimeSpan]::FromSeconds($StopTimeoutSeconds)) }
        catch [System.ServiceProcess.TimeoutException] {
            $processId = (Get-ServiceInfo).ProcessId
            Write-Warning "$ServiceName did not stop within $StopTimeoutSeconds s; ending process $processId"
            if ($processId) { Stop-Process -Id $processId -Force }
        }
    }
}

function Install-AppService {
    if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
        if (-not $WhatIfPreference) { throw "$BinaryPath does not exist: copy the Go binary there first." }
        Write-Warning "$BinaryPath does not exist yet."
    } else { Assert-AdminOnly $BinaryPath "the service $ServiceName" }
    $command = ('"{0}" {1}' -f $BinaryPath, $ArgumentLine).TrimEnd()
    $mode = @{ 'auto' = 'Automatic'; 'delayed-auto' = 'Automatic'; 'demand' = 'Manual' }[$Start]
    $info = Get-ServiceInfo
    if ($null -eq $info) {
        Invoke-Change $ServiceName 'create service' {
            New-Service -Name $ServiceName -BinaryPathName $command -DisplayName $DisplayName `
                -Description $Description -StartupType $mode | Out-Null
        }
        $info = Get-ServiceInfo
        if ($null -eq $info) { Write-Output "would then set identity, start type and failure actions"; return }
    } else {
        if ([string] $info.PathName -ne $command) {
            Stop-WithTimeout  # the new command line takes effect at the next start, below
            Invoke-Change $ServiceName "set command line to $command" {
                $result = Invoke-CimMethod -InputObject $info -MethodName Change -Arguments @{ PathName = $command }
                if ($result.ReturnValue -ne 0) { throw "Win32_Service.Change failed with code $($result.ReturnValue)" }
            }
        } else { Write-Unchanged "command line $command" }
        if ([string] $info.DisplayName -ne $DisplayName -or [string] $info.Description -ne $Description) {
            Invoke-Change $ServiceName 'set display name and description' {
                Set-Service -Name $ServiceName -DisplayName $DisplayName -Description $Description
            }
        } else { Write-Unchanged 'display name and description' }
    }
    $delayed = [bool] ($info.PSObject.Properties.Match('DelayedAutoStart').Count -and $info.DelayedAutoStart)
    $currentStart = if ($info.StartMode -eq 'Auto' -and $delayed) { 'delayed-auto' }
        elseif ($info.StartMode -eq 'Auto') { 'auto' } else { 'demand' }
    if ($currentStart -ne $Start) {
        Invoke-Change $ServiceName "set start type $Start" {
            Invoke-Native 'sc.exe' @('config', $ServiceName, 'start=', $Start)
        }
    } else { Write-Unchanged "start type $Start" }
    Set-Identity $info
    Set-FailureAction
    Set-BinaryHash
    $svc = Get-Service -Name $ServiceName
    if ($Start -ne 'demand' -and $svc.Status -ne 'Running') {
        Invoke-Change $ServiceName 'start' {
            try { Start-Service -Name $ServiceName }
            catch { throw "Starting $ServiceName failed: $($_.Exception.Message) $Hint1053" }
        }
    } elseif ($Start -ne 'demand') { Write-Unchanged "$ServiceName is running" }
}

function Set-BinaryHash {
    # The service control manager starts the binary itself, so its hash cannot be checked before each start; it is
    # recorded here and audit.ps1 reports a binary changed since (control service:binary-sha256).
    if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) { return }
    $hash = (Get-FileHash -LiteralPath $BinaryPath -Algorithm SHA256).Hash
    $key = "$ServiceKey\Parameters"
    $item = Get-Item -LiteralPath $key -ErrorAction SilentlyContinue
    $recorded = if ($null -ne $item) { [string] $item.GetValue('WgobuildSha256', '') } else { '' }
    if ($recorded -eq $hash) { Write-Unchanged "recorded SHA-256 of $BinaryPath"; return }
    Invoke-Change $ServiceName "record the SHA-256 of $BinaryPath ($hash) for audit" {
        if ($null -eq $item) { New-Item -Path $key -Force | Out-Null }
        New-ItemProperty -LiteralPath $key -Name 'WgobuildSha256' -Value $hash -PropertyType String -Force | Out-Null
    }
}

function Uninstall-AppService {
    if ($null -eq (Get-ServiceInfo)) { Write-Unchanged "service $ServiceName is not installed"; return }
    Stop-WithTimeout
    Invoke-Change $ServiceName 'delete service' { Invoke-Native 'sc.exe' @('delete', $ServiceName) }
}

try {
    if ($Action -eq 'install') { Install-AppService } else { Uninstall-AppService }
    Write-Summary
    exit 0
} catch {
    Write-Error -ErrorRecord $_ -ErrorAction Continue
    exit 1
}
