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
