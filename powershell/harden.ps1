<#
.SYNOPSIS
    Harden a Windows container host or servercore build stage for the service @@service_name_text.

.DESCRIPTION
    Applies, in order:
      1. stops and disables the listed services;
      2. disables the listed optional features (Disable-WindowsOptionalFeature, or DISM when the cmdlet is missing);
      3. turns the SMB1 server off (unless -Smb1Server $true);
      4. prepares the service identity: the virtual account NT SERVICE\<ServiceName> (no password), or a local user
         whose random password is generated here, handed to Windows as a SecureString and never printed or stored;
      5. grants that identity read-and-execute on the install folder and modify on the log folder, nothing more
         (icacls /grant:r replaces any earlier explicit grant of that identity).
    Every change runs inside ShouldProcess: -WhatIf lists what would change and changes nothing. The script is
    idempotent: a second run reports each control as unchanged. Rendered by wgobuild from wgobuild.toml.

.NOTES
    Exit codes: 0 done (or nothing to do), 1 failed (the error is printed), 3 is used by audit.ps1 only.
    A Windows restart may be needed after features are disabled; the script says so and never restarts itself.
#>
#Requires -Version 5.1
#Requires -RunAsAdministrator
[CmdletBinding(SupportsShouldProcess)]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-FolderGrant',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'Set-AdminOnly',
    Justification = 'each change inside goes through Invoke-Change, which asks this script''s own ShouldProcess (-WhatIf and -Confirm apply to the whole script)')]
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Scope = 'Function', Target = 'New-RandomSecret',
    Justification = 'it only makes a random string in memory; nothing on the machine changes')]
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
    [string] $LogDir = @@log_dir
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$script:Changes = 0
$script:RestartNeeded = $false

@@shared_change

@@shared_admin_check

@@shared_admin_only

@@shared_service_sid

@@shared_secret

@@shared_feature_state

function Disable-Feature([string] $Name) {
    if (Get-Command Disable-WindowsOptionalFeature -ErrorAction SilentlyContinue) {
        $result = Disable-WindowsOptionalFeature -Online -FeatureName $Name -NoRestart
        if ($result.RestartNeeded) { $script:RestartNeeded = $true }
        return
    }
    & dism.exe /English /Online /Disable-Feature "/FeatureName:$Name" /NoRestart /Quiet
    if ($LASTEXITCODE -eq 3010) { $script:RestartNeeded = $true }
    elseif ($LASTEXITCODE -ne 0) { throw "DISM could not disable feature ${Name}: exit code $LASTEXITCODE" }
}

function Get-ExplicitRight([string] $Path, [string] $Sid) {
    # Rights explicitly granted to $Sid on $Path (inherited entries are not ours to manage).
    $acl = Get-Acl -LiteralPath $Path
    $rules = $acl.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier])
    $found = @($rules | Where-Object { $_.IdentityReference.Value -eq $Sid -and $_.AccessControlType -eq 'Allow' })
    return $found
}

function Protect-InstallDir {
    # The service binary runs as the service identity: only admins may change what lies here (a folder made under
    # C:\ inherits "Authenticated Users: Modify").
    if (-not (Test-Path -LiteralPath $InstallDir -PathType Container)) {
        Invoke-Change $InstallDir 'create folder' { [System.IO.Directory]::CreateDirectory($InstallDir) | Out-Null }
    }
    if (-not (Test-Path -LiteralPath $InstallDir -PathType Container)) { return }
    $acl = Get-Acl -LiteralPath $InstallDir
    if ($acl.AreAccessRulesProtected -and -not @(Get-WritableBy $InstallDir).Count) {
        Write-Unchanged "$InstallDir is admin-only"
    } else {
        Invoke-Change $InstallDir 'make admin-only (SYSTEM and Administrators, no inherited entries)' {
            Set-AdminOnly $InstallDir
        }
    }
}

function Set-FolderGrant([string] $Path, [string] $Sid, [string] $Principal, [string] $Short, [string] $Rights) {
    $want = [System.Security.AccessControl.FileSystemRights] $Rights
    $inherit = [System.Security.AccessControl.InheritanceFlags] 'ContainerInherit, ObjectInherit'
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) {
        Invoke-Change $Path 'create folder' { [System.IO.Directory]::CreateDirectory($Path) | Out-Null }
    }
    if (Test-Path -LiteralPath $Path -PathType Container) {
        $rules = @(Get-ExplicitRight $Path $Sid)
        $sync = [System.Security.AccessControl.FileSystemRights]::Synchronize
        if ($rules.Count -eq 1 -and ($rules[0].FileSystemRights -bor $sync) -eq ($want -bor $sync) -and
            $rules[0].InheritanceFlags -eq $inherit) {
            Write-Unchanged "$Principal has $Rights on $Path"
            return
        }
    }
    Invoke-Change $Path "grant $Principal $Rights (only)" {
        & icacls.exe $Path '/grant:r' "*${Sid}:(OI)(CI)$Short" | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "icacls could not set the grant on ${Path}: exit code $LASTEXITCODE" }
    }
}

try {
    foreach ($name in $Services) {
        $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
        if ($null -eq $svc) { Write-Unchanged "service $name is not installed"; continue }
        if ($svc.Status -ne 'Stopped') {
            Invoke-Change "service $name" 'stop' { Stop-Service -Name $name -Force }
        } else { Write-Unchanged "service $name is stopped" }
        if ([string] $svc.StartType -ne 'Disabled') {
            Invoke-Change "service $name" 'set start type Disabled' { Set-Service -Name $name -StartupType Disabled }
        } else { Write-Unchanged "service $name is disabled" }
    }

    foreach ($name in $Features) {
        $state = Get-FeatureState $name
        if ($state -in @('Enabled', 'EnablePending')) {
            Invoke-Change "feature $name" 'disable' { Disable-Feature $name }
        } else { Write-Unchanged "feature $name is $state" }
    }

    $smb1 = $null
    if (Get-Command Get-SmbServerConfiguration -ErrorAction SilentlyContinue) {
        try { $smb1 = [bool] (Get-SmbServerConfiguration).EnableSMB1Protocol }
        catch { Write-Warning "SMB server configuration unreadable ($($_.Exception.Message)); SMB1 check skipped." }
    } else {
        Write-Warning 'Get-SmbServerConfiguration is not available here (no SMB server); SMB1 server check skipped.'
    }
    if ($null -ne $smb1) {
        if ($smb1 -ne $Smb1Server) {
            Invoke-Change 'SMB server' "set EnableSMB1Protocol to $Smb1Server" {
                $smbSettings = @{ EnableSMB1Protocol = $Smb1Server; Force = $true }
                Set-SmbServerConfiguration @smbSettings
            }
        } else { Write-Unchanged "SMB1 server setting is $smb1" }
    }

    if ($Identity -eq 'virtual') {
        $principal = "NT SERVICE\$ServiceName"
        $sid = Get-ServiceSid $ServiceName
        Write-Unchanged "identity $principal is a virtual account (no password)"
    } else {
        if (-not $Account) { throw "Identity 'local-user' needs -Account." }
        $principal = "$env:COMPUTERNAME\$Account"
        $user = Get-LocalUser -Name $Account -ErrorAction SilentlyContinue
        if ($null -eq $user) {
            # New-LocalUser -Description takes at most 48 characters; service names may be longer.
            $description = "Runs the $ServiceName service"
            if ($description.Length -gt 48) { $description = $description.Substring(0, 48) }
            Invoke-Change "local user $Account" 'create with a random password (not stored)' {
                New-LocalUser -Name $Account -Password (New-RandomSecret) -PasswordNeverExpires `
                    -UserMayNotChangePassword -AccountNeverExpires -Description $description | Out-Null
            }
            $user = Get-LocalUser -Name $Account -ErrorAction SilentlyContinue
        } else { Write-Unchanged "local user $Account exists" }
        $sid = if ($null -ne $user) { $user.SID.Value } else { '' }
    }

    Protect-InstallDir
    if ($sid) {
        Set-FolderGrant $InstallDir $sid $principal 'RX' 'ReadAndExecute'
        Set-FolderGrant $LogDir $sid $principal 'M' 'Modify'
    } else {
        Write-Output "would grant $principal ReadAndExecute on $InstallDir and Modify on $LogDir once it exists"
    }

    Write-Summary
    if ($script:RestartNeeded) { Write-Warning 'A restart is needed to finish disabling features.' }
    exit 0
} catch {
    Write-Error -ErrorRecord $_ -ErrorAction Continue
    exit 1
}
