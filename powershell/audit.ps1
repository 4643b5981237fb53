<#
.SYNOPSIS
    Check this machine against the hardening settings of @@service_name_text, read-only.

.DESCRIPTION
    Reads the same controls harden.ps1 sets and writes one JSON object per control to the output, one per line:
        {"id":"service:Spooler","expected":"Stopped, Disabled","actual":"Running, Automatic","ok":false}
    Nothing is changed (there is no ShouldProcess call because there is nothing to change; -WhatIf is accepted).
    Controls: service:<name>, feature:<name>, smb1-server, identity, acl:install-dir, acl:log-dir.
    Rendered by wgobuild from wgobuild.toml.

.NOTES
    Exit codes: 0 every control is ok, 1 the audit itself failed (the error is printed), 3 drift (at least one
    control has ok = false).
#>
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding(SupportsShouldProcess)]
param(
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string[]] $Services = @@services,
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string[]] $Features = @@features,
    [bool] $Smb1Server = @@smb1_server,
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string] $ServiceName = @@service_name,
    [ValidateSet('virtual', 'local-user')]
    [string] $Identity = @@identity,
    [ValidatePattern('^\z|^[A-Za-z0-9][A-Za-z0-9._-]*\z')]
    [string] $Account = @@account,
    [string] $InstallDir = @@install_dir,
    [string] $BinaryPath = @@binary_path,
    [string] $LogDir = @@log_dir
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$script:Drift = 0

function Write-Control([string] $Id, $Expected, $Actual, [bool] $Ok) {
    if (-not $Ok) { $script:Drift++ }
    $record = [ordered]@{ id = $Id; expected = $Expected; actual = $Actual; ok = $Ok }
    Write-Output ($record | ConvertTo-Json -Compress)
}

@@shared_service_sid

@@shared_feature_state

@@shared_admin_check

function Test-FolderGrant([string] $Id, [string] $Path, [string] $Sid, [string] $Rights) {
    if (-not $Sid) { Write-Control $Id $Rights 'identity missing' $false; return }
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) {
        Write-Control $Id $Rights "folder $Path missing" $false
        return
    }
    $want = [System.Security.AccessControl.FileSystemRights] $Rights
    $sync = [System.Security.AccessControl.FileSystemRights]::Synchronize
    $inherit = [System.Security.AccessControl.InheritanceFlags] 'ContainerInherit, ObjectInherit'
    $acl = Get-Acl -LiteralPath $Path
    $rules = @($acl.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier]) |
        Where-Object { $_.IdentityReference.Value -eq $Sid -and $_.AccessControlType -eq 'Allow' })
    if ($rules.Count -eq 0) { Write-Control $Id $Rights 'none' $false; return }
    $actual = ($rules | ForEach-Object { "$($_.FileSystemRights) ($($_.InheritanceFlags))" }) -join '; '
    $ok = $rules.Count -eq 1 -and ($rules[0].FileSystemRights -bor $sync) -eq ($want -bor $sync) -and
        $rules[0].InheritanceFlags -eq $inherit
    Write-Control $Id "$Rights (ContainerInherit, ObjectInherit)" $actual $ok
}

try {
    foreach ($name in $Services) {
        $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
        if ($null -eq $svc) { Write-Control "service:$name" 'Stopped, Disabled' 'not installed' $true; continue }
        $actual = "$($svc.Status), $($svc.StartType)"
        Write-Control "service:$name" 'Stopped, Disabled' $actual ($actual -eq 'Stopped, Disabled')
    }

    foreach ($name in $Features) {
        $state = Get-FeatureState $name
        Write-Control "feature:$name" 'Disabled' $state ($state -notin @('Enabled', 'EnablePending'))
    }

    if (Get-Command Get-SmbServerConfiguration -ErrorAction SilentlyContinue) {
        try {
            $smb1 = [bool] (Get-SmbServerConfiguration).EnableSMB1Protocol
            Write-Control 'smb1-server' $Smb1Server $smb1 ($smb1 -eq $Smb1Server)
        } catch { Write-Control 'smb1-server' $Smb1Server "unreadable: $($_.Exception.Message)" $false }
    } else {
        Write-Control 'smb1-server' $Smb1Server 'no SMB server' (-not $Smb1Server)
    }

    $installed = Get-CimInstance -ClassName Win32_Service -Filter "Name = '$ServiceName'" -ErrorAction SilentlyContinue
    if ($Identity -eq 'virtual') {
        $expected = "NT SERVICE\$ServiceName"
        $sid = Get-ServiceSid $ServiceName
    } else {
        $expected = ".\$Account"
        $user = Get-LocalUser -Name $Account -ErrorAction SilentlyContinue
        $sid = if ($null -ne $user) { $user.SID.Value } else { '' }
        try {
            $admins = @(Get-LocalGroupMember -SID 'S-1-5-32-544' | Where-Object { $_.SID.Value -eq $sid })
            $userState = if (-not $sid) { 'missing' } elseif ($admins.Count) { 'administrator' } else { 'present' }
        } catch { $userState = "unknown ($($_.Exception.Message))" }
        Write-Control 'local-user' "$Account present, not an administrator" "$Account $userState" ($userState -eq 'present')
    }
    if ($null -eq $installed) {
        Write-Control 'identity' $expected 'service not installed' $true
    } else {
        $startName = [string] $installed.StartName
        $same = $startName -eq $expected -or $startName -eq "$env:COMPUTERNAME\$Account"
        Write-Control 'identity' $expected $startName $same
    }

    Test-FolderGrant 'acl:install-dir' $InstallDir $sid 'ReadAndExecute'
    if ($null -ne $installed) {
        # The hash service.ps1 recorded at install: a different binary now runs as the service.
        $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName\Parameters"
        $item = Get-Item -LiteralPath $key -ErrorAction SilentlyContinue
        $recorded = if ($null -ne $item) { [string] $item.GetValue('WgobuildSha256', '') } else { '' }
        $actual = if (Test-Path -LiteralPath $BinaryPath -PathType Leaf) {
            (Get-FileHash -LiteralPath $BinaryPath -Algorithm SHA256).Hash } else { "$BinaryPath missing" }
        $expected = if ($recorded) { $recorded } else { 'a hash recorded by service.ps1 install' }
        Write-Control 'service:binary-sha256' $expected $actual ($recorded -and $actual -eq $recorded)
    }
    # Whoever can change the install folder runs code as the service: SYSTEM and Administrators only.
    if (Test-Path -LiteralPath $InstallDir -PathType Container) {
        $writers = @(Get-WritableBy $InstallDir)
        $protected = (Get-Acl -LiteralPath $InstallDir).AreAccessRulesProtected
        $actual = if ($writers.Count) { 'also ' + ($writers -join ', ') } elseif (-not $protected) { 'inherits' }
            else { 'SYSTEM and Administrators only' }
        $ok = $protected -and -not $writers.Count
        Write-Control 'acl:install-dir-admin-only' 'SYSTEM and Administrators only' $actual $ok
    } else {
        Write-Control 'acl:install-dir-admin-only' 'SYSTEM and Administrators only' "folder $InstallDir missing" $false
    }
    Test-FolderGrant 'acl:log-dir' $LogDir $sid 'Modify'

    if ($script:Drift -gt 0) { exit 3 }
    exit 0
} catch {
    Write-Error -ErrorRecord $_ -ErrorAction Continue
    exit 1
}
