# Functions shared by several wgobuild scripts. Each block is copied into the scripts that use it when they are
# rendered (every rendered script stands alone, for review and hand-off); this file is never run by itself.

# wgobuild:block change
function Write-Unchanged([string] $What) { Write-Output "unchanged: $What" }

function Invoke-Change([string] $Target, [string] $Action, [scriptblock] $Change) {
    if ($PSCmdlet.ShouldProcess($Target, $Action)) {
        & $Change
        $script:Changes++
        Write-Output "changed: $Target ($Action)"
    }
}

function Write-Summary([string] $Done = 'change(s) applied') {
    if ($WhatIfPreference) { Write-Output 'What-if run: nothing was changed.' }
    elseif ($script:Changes -eq 0) { Write-Output 'No changes needed: this machine already matches the settings.' }
    else { Write-Output "$($script:Changes) $Done." }
}

# wgobuild:block service_sid
function Get-ServiceSid([string] $Name) {
    # The SID of NT SERVICE\<name> is derived from the name alone, so it is known before the service exists.
    $sha = [System.Security.Cryptography.SHA1]::Create()
    try { $hash = $sha.ComputeHash([System.Text.Encoding]::Unicode.GetBytes($Name.ToUpperInvariant())) }
    finally { $sha.Dispose() }
    $parts = foreach ($i in 0..4) { [BitConverter]::ToUInt32($hash, $i * 4) }
    return 'S-1-5-80-' + ($parts -join '-')
}

# wgobuild:block secret
function New-RandomSecret {
    # 48 random bytes, base64 (64 characters); the fixed tail only guarantees the four character classes that
    # password policies ask for, the strength is in the random part. Never printed, never written anywhere.
    $bytes = New-Object byte[] 48
    $rng = [System.Security.Cryptography.RandomNumberGenerator]::Create()
    try { $rng.GetBytes($bytes) } finally { $rng.Dispose() }
    $secure = New-Object System.Security.SecureString
    foreach ($ch in ([Convert]::ToBase64String($bytes) + 'aZ7-').ToCharArray()) { $secure.AppendChar($ch) }
    [Array]::Clear($bytes, 0, $bytes.Length)
    $secure.MakeReadOnly()
    return $secure
}

# wgobuild:block feature_state
function Get-FeatureState([string] $Name) {
    if (Get-Command Get-WindowsOptionalFeature -ErrorAction SilentlyContinue) {
        try { $feature = Get-WindowsOptionalFeature -Online -FeatureName $Name -ErrorAction Stop }
        catch { return 'Absent' }
        if ($null -eq $feature) { return 'Absent' }
        return [string] $feature.State
    }
    $info = & dism.exe /English /Online /Get-FeatureInfo "/FeatureName:$Name"
    if ($LASTEXITCODE -ne 0) { return 'Absent' }
    $line = $info | Where-Object { $_ -match '^State : ' } | Select-Object -First 1
    if ($null -eq $line) { return 'Absent' }
    return ($line -replace '^State : ', '').Trim() -replace ' ', ''
}

# wgobuild:block admin_check
# SYSTEM, Administrators, TrustedInstaller, CREATOR OWNER: the only principals that may write where SYSTEM runs code.
$AdminSids = @('S-1-5-18', 'S-1-5-32-544', 'S-1-3-0',
    'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464')
# WriteData, AppendData, WriteExtendedAttributes, DeleteSubdirectoriesAndFiles, WriteAttributes, Delete,
# ChangePermissions, TakeOwnership, GENERIC_ALL, GENERIC_WRITE.
$WriteMask = [long] 1343029590

function Get-WritableBy([string] $Path) {
    # Principals other than the admin ones that may change $Path (write, delete, re-ACL, or own it).
    $acl = Get-Acl -LiteralPath $Path
    $found = @()
    $owner = $acl.GetOwner([System.Security.Principal.SecurityIdentifier]).Value
    if ($AdminSids -notcontains $owner) { $found += "owner $owner" }
    foreach ($rule in $acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        $sid = $rule.IdentityReference.Value
        $rights = [long] [int] $rule.FileSystemRights
        if ($rule.AccessControlType -eq 'Allow' -and $AdminSids -notcontains $sid -and ($rights -band $WriteMask)) {
            $found += $sid
        }
    }
    return $found
}

function Assert-AdminOnly([string] $Path, [string] $Why) {
    # $Path and its folder must be changeable by admins only, or whoever can change them runs code as $Why.
    foreach ($item in @($Path, (Split-Path -Parent $Path))) {
        if (-not $item -or -not (Test-Path -LiteralPath $item)) { continue }
        $others = @(Get-WritableBy $item)
        if ($others.Count) {
            throw "$item can be changed by $($others -join ', '): whoever can change it runs code as $Why. " +
                'Keep it in a folder only SYSTEM and Administrators can write (harden.ps1 makes the install folder so).'
        }
    }
}

# wgobuild:block admin_only
function Set-AdminOnly([string] $Path) {
    # No inherited entries; Administrators own it; SYSTEM and Administrators have full control, nobody else anything.
    & icacls.exe $Path '/inheritance:r' '/grant:r' '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not make $Path admin-only: exit code $LASTEXITCODE" }
    & icacls.exe $Path '/setowner' '*S-1-5-32-544' | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not give $Path to Administrators: exit code $LASTEXITCODE" }
    foreach ($sid in @(Get-WritableBy $Path | Where-Object { $_ -notlike 'owner *' })) {
        & icacls.exe $Path '/remove:g' "*$sid" | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "icacls could not remove $sid from ${Path}: exit code $LASTEXITCODE" }
    }
}
