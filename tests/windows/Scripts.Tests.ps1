# Pester 5 tests of the rendered PowerShell scripts on a real Windows host (run by .github/workflows/windows.yml as
# an administrator on an ephemeral runner; they change that machine). The Linux suite only parses this file.
#Requires -Version 5.1

BeforeAll {
    $script:Repo = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path
    $script:Module = Join-Path $TestDrive 'hello'
    Copy-Item -Recurse (Join-Path $Repo 'examples\hello') $Module
    $script:Scripts = Join-Path $Module 'dist\powershell'
    $script:PowerShell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'

    function Invoke-Script([string] $Name, [string[]] $Arguments = @()) {
        $output = & $script:PowerShell -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass `
            -File (Join-Path $script:Scripts $Name) @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = @($output | ForEach-Object { "$_" }) }
    }

    function Set-Settings([string] $Toml) {
        Add-Content -LiteralPath (Join-Path $script:Module 'wgobuild.toml') -Value $Toml -Encoding utf8
        Push-Location $script:Module
        try { python -m invoke --search-root $script:Repo scripts | Out-Null } finally { Pop-Location }
        if ($LASTEXITCODE) { throw "invoke scripts failed with exit code $LASTEXITCODE" }
    }

    Set-Settings ''
}

Describe 'Rendered scripts' {
    It '<_> parses without errors in Windows PowerShell' -ForEach @(
        'harden.ps1', 'audit.ps1', 'rotate-logs.ps1', 'cleanup.ps1', 'service.ps1') {
        $tokens = $null; $errors = $null
        [System.Management.Automation.Language.Parser]::ParseFile((Join-Path $Scripts $_), [ref] $tokens,
            [ref] $errors) | Out-Null
        $errors | Should -BeNullOrEmpty
    }

    It 'harden -WhatIf changes nothing' {
        $before = (Get-Service -Name Spooler -ErrorAction SilentlyContinue).StartType
        $run = Invoke-Script 'harden.ps1' @('-WhatIf')
        $run.ExitCode | Should -Be 0
        (Get-Service -Name Spooler -ErrorAction SilentlyContinue).StartType | Should -Be $before
    }

    It 'audit writes one JSON object per control and exits 0 or 3' {
        $run = Invoke-Script 'audit.ps1'
        $run.ExitCode | Should -BeIn @(0, 3)
        $records = @($run.Output | Where-Object { $_.StartsWith('{') } | ForEach-Object { $_ | ConvertFrom-Json })
        $records.Count | Should -BeGreaterThan 0
        foreach ($record in $records) {
            @($record.PSObject.Properties.Name) | Should -Be @('id', 'expected', 'actual', 'ok')
        }
        ($records | Where-Object { -not $_.ok }).Count -gt 0 | Should -Be ($run.ExitCode -eq 3)
    }
}

Describe 'rotate-logs' {
    It 'rotates, keeps N and compresses on the next run' {
        $logs = Join-Path $TestDrive 'logs'
        New-Item -ItemType Directory -Path $logs -Force | Out-Null
        # -MaxSizeMB 1 with a 1.2 MB file: rotated by size (0 would turn the size criterion off)
        Set-Content -LiteralPath (Join-Path $logs 'app.log') -Value ('x' * 1200000)
        $first = Invoke-Script 'rotate-logs.ps1' @('-LogDir', $logs, '-MaxSizeMB', '1', '-MaxAgeDays', '0', '-Keep', '2')
        $first.ExitCode | Should -Be 0
        Set-Content -LiteralPath (Join-Path $logs 'app.log') -Value ('y' * 1200000)
        $second = Invoke-Script 'rotate-logs.ps1' @('-LogDir', $logs, '-MaxSizeMB', '1', '-MaxAgeDays', '0', '-Keep', '2')
        $second.ExitCode | Should -Be 0
        @(Get-ChildItem -LiteralPath $logs -Filter 'app.log.*').Count | Should -BeGreaterThan 1
    }

    It '-Register copes with an existing task that has no trigger (StrictMode 3.0)' {
        $name = (Select-String -LiteralPath (Join-Path $Scripts 'rotate-logs.ps1') -Pattern "TaskName = '([^']+)'").Matches[0].Groups[1].Value
        $action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument '/c exit 0'
        Register-ScheduledTask -TaskName $name -Action $action -User 'SYSTEM' -Force | Out-Null
        try {
            $run = Invoke-Script 'rotate-logs.ps1' @('-Register', '-WhatIf')
            $run.ExitCode | Should -Be 0
        } finally {
            Unregister-ScheduledTask -TaskName $name -Confirm:$false -ErrorAction SilentlyContinue
        }
    }
}

Describe 'install-service on the example' {
    BeforeAll {
        Push-Location $Module
        try {
            $env:GOOS = 'windows'; $env:GOARCH = 'amd64'; $env:CGO_ENABLED = '0'
            go build -trimpath -ldflags '-s -w' -o 'dist\windows-amd64\hello.exe' .
            if ($LASTEXITCODE) { throw 'go build failed' }
        } finally {
            Remove-Item -Path 'Env:GOOS', 'Env:GOARCH', 'Env:CGO_ENABLED' -ErrorAction SilentlyContinue
            Pop-Location
        }
        $script:InstallDir = Join-Path $TestDrive 'svc'
        Set-Settings "`n[harden]`ninstall_dir = '$InstallDir'`nservice_name = 'wgobuild-hello-test'`n[service]`nargs = ['-addr', '127.0.0.1:18080']`n"
        New-Item -ItemType Directory -Path $InstallDir -Force | Out-Null
        Copy-Item (Join-Path $Module 'dist\windows-amd64\hello.exe') $InstallDir
    }

    It 'installs a service that starts, answers and stops' {
        Push-Location $Module
        try {
            python -m invoke --search-root $Repo install-service
            $LASTEXITCODE | Should -Be 0
            Start-Service -Name 'wgobuild-hello-test'
            (Get-Service -Name 'wgobuild-hello-test').Status | Should -Be 'Running'
            (Invoke-WebRequest -UseBasicParsing 'http://127.0.0.1:18080/hello?name=pester').Content | Should -Match 'pester'
            Stop-Service -Name 'wgobuild-hello-test'
            (Get-Service -Name 'wgobuild-hello-test').Status | Should -Be 'Stopped'
        } finally {
            python -m invoke --search-root $Repo uninstall-service
            Pop-Location
        }
    }
}
