/*
 * plugstore's default rule set, compiled into the scanner.
 *
 * Every public rule carries `severity` (critical, high, medium or low: what the finding
 * `yara.<rule name>` weighs in the verdict) and `description` (the finding's message).
 * Plugins are WebAssembly modules, native libraries and their data files; nothing here
 * has a reason to be in one. Single weak indicators are medium (a reviewer should know);
 * combinations and unambiguous markers are high; only the EICAR test file is critical.
 */

rule eicar_test_file {
    meta:
        severity = "critical"
        description = "the EICAR anti-virus test file: every scanner must treat it as malware"
    strings:
        // The standard 68-byte string, as hex so that this file itself is not detected.
        $eicar = { 58 35 4F 21 50 25 40 41 50 5B 34 5C 50 5A 58 35 34 28 50 5E 29 37 43 43
                   29 37 7D 24 45 49 43 41 52 2D 53 54 41 4E 44 41 52 44 2D 41 4E 54 49 56
                   49 52 55 53 2D 54 45 53 54 2D 46 49 4C 45 21 24 48 2B 48 2A }
    condition:
        $eicar
}

// --- crypto-currency miners -------------------------------------------------------------

rule cryptominer_stratum_url {
    meta:
        severity = "high"
        description = "a mining pool URL of the stratum protocol: the plugin mines crypto-currency"
    strings:
        $tcp = "stratum+tcp://" ascii wide nocase
        $ssl = "stratum+ssl://" ascii wide nocase
        $tls = "stratum+tls://" ascii wide nocase
        $stratum2 = "stratum2+tcp://" ascii wide nocase
    condition:
        any of them
}

rule cryptominer_xmrig {
    meta:
        severity = "high"
        description = "marks of the XMRig miner (its name, its command-line options)"
    strings:
        $name = "xmrig" ascii wide nocase
        $donate = "--donate-level" ascii wide
        $cpu_priority = "--cpu-priority" ascii wide
        $randomx = "randomx" ascii wide nocase
        $huge_pages = "huge-pages-jit" ascii wide
    condition:
        $name or $donate or ($randomx and ($cpu_priority or $huge_pages))
}

rule cryptominer_pool_domain {
    meta:
        severity = "high"
        description = "the domain of a crypto-currency mining pool"
    strings:
        $moneroocean = "moneroocean.stream" ascii wide nocase
        $nanopool = "nanopool.org" ascii wide nocase
        $minexmr = "minexmr.com" ascii wide nocase
        $supportxmr = "supportxmr.com" ascii wide nocase
        $hashvault = "hashvault.pro" ascii wide nocase
        $c3pool = "c3pool.com" ascii wide nocase
        $herominers = "herominers.com" ascii wide nocase
        $f2pool = "f2pool.com" ascii wide nocase
        $twominers = "2miners.com" ascii wide nocase
        $unmineable = "unmineable.com" ascii wide nocase
        $nicehash = "nicehash.com" ascii wide nocase
        $xmrpool = "xmrpool.eu" ascii wide nocase
    condition:
        any of them
}

// --- credential and wallet stealers -----------------------------------------------------

rule stealer_browser_credentials {
    meta:
        severity = "high"
        description = "several paths of browsers' credential stores: the plugin reads saved passwords or cookies"
    strings:
        $login_data = "Login Data" ascii wide
        $local_state = "\\Local State" ascii wide
        $encrypted_key = "encrypted_key" ascii wide
        $chrome = "\\Google\\Chrome\\User Data" ascii wide nocase
        $edge = "\\Microsoft\\Edge\\User Data" ascii wide nocase
        $brave = "\\BraveSoftware\\Brave-Browser\\User Data" ascii wide nocase
        $firefox = "\\Mozilla\\Firefox\\Profiles" ascii wide nocase
        $logins_json = "logins.json" ascii wide
        $key4 = "key4.db" ascii wide
        $cookies = "\\Network\\Cookies" ascii wide
        $web_data = "Web Data" ascii wide
    condition:
        2 of them
}

rule stealer_crypto_wallets {
    meta:
        severity = "high"
        description = "paths of crypto-currency wallet files: the plugin looks for wallets to steal"
    strings:
        $wallet_dat = "wallet.dat" ascii wide nocase
        $exodus = "exodus.wallet" ascii wide nocase
        $electrum = "\\Electrum\\wallets" ascii wide nocase
        $ethereum = "\\Ethereum\\keystore" ascii wide nocase
        $atomic = "\\atomic\\Local Storage\\leveldb" ascii wide nocase
        // The MetaMask browser extension's id.
        $metamask = "nkbihfbeogaeaoehlefnkodbefgpgknn" ascii wide
    condition:
        any of them
}

rule stealer_discord_tokens {
    meta:
        severity = "high"
        description = "Discord token theft: the client's token store or the token format"
    strings:
        // Prefix of the encrypted tokens the Discord client keeps in its leveldb.
        $encrypted_prefix = "dQw4w9WgXcQ:" ascii wide
        $leveldb = "\\Local Storage\\leveldb" ascii wide nocase
        $discord = "discord" ascii wide nocase
        $mfa_token = /mfa\.[A-Za-z0-9_\-]{84}/ ascii wide
        $token = /[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}/ ascii
    condition:
        $encrypted_prefix or $mfa_token or ($leveldb and $discord) or ($token and $discord)
}

rule credential_store_path {
    meta:
        severity = "medium"
        description = "one path of a browser credential store or a wallet: alone it may be innocent"
    strings:
        $login_data = "Login Data" ascii wide
        $local_state = "\\Local State" ascii wide
        $chrome = "\\Google\\Chrome\\User Data" ascii wide nocase
        $firefox = "\\Mozilla\\Firefox\\Profiles" ascii wide nocase
        $key4 = "key4.db" ascii wide
    condition:
        any of them and not stealer_browser_credentials
}

rule discord_webhook_url {
    meta:
        severity = "medium"
        description = "a Discord webhook URL, a common channel to exfiltrate stolen data"
    strings:
        $discord = "discord.com/api/webhooks/" ascii wide nocase
        $discordapp = "discordapp.com/api/webhooks/" ascii wide nocase
    condition:
        any of them
}

rule telegram_bot_api {
    meta:
        severity = "medium"
        description = "a Telegram bot API URL: messages sent to a bot, a common exfiltration channel"
    strings:
        $api = "api.telegram.org/bot" ascii wide nocase
    condition:
        $api
}

rule telegram_bot_file_exfil {
    meta:
        severity = "high"
        description = "a Telegram bot API URL with file upload methods: data exfiltration to a bot"
    strings:
        $api = "api.telegram.org/bot" ascii wide nocase
        $document = "sendDocument" ascii wide
        $photo = "sendPhoto" ascii wide
        $media = "sendMediaGroup" ascii wide
    condition:
        $api and any of ($document, $photo, $media)
}

// --- remote access and persistence -------------------------------------------------------

rule windows_autorun_key {
    meta:
        severity = "medium"
        description = "the Windows Run or RunOnce registry key: the plugin makes something start at logon"
    strings:
        $run = "Software\\Microsoft\\Windows\\CurrentVersion\\Run" ascii wide nocase
        $winlogon = "Software\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon" ascii wide nocase
    condition:
        any of them
}

rule rat_family_marker {
    meta:
        severity = "high"
        description = "the name or a mark of a known remote access trojan"
    strings:
        $asyncrat = "AsyncRAT" ascii wide nocase
        $async_client = "AsyncClient" ascii wide
        $njrat = "njRAT" ascii wide nocase
        $bladabindi = "Bladabindi" ascii wide nocase
        $quasar_rat = "QuasarRAT" ascii wide nocase
        $quasar_client = "Quasar.Client" ascii wide
        $quasar_common = "Quasar.Common" ascii wide
        $dcrat = "DcRat" ascii wide fullword
        $remcos = "Remcos" ascii wide fullword nocase
        $nanocore = "NanoCore" ascii wide nocase
        $darkcomet = "DarkComet" ascii wide nocase
    condition:
        any of them
}

rule reverse_shell {
    meta:
        severity = "high"
        description = "a reverse shell command: the plugin hands a shell to a remote host"
    strings:
        $sh_i = "/bin/sh -i" ascii wide
        $bash_i = "/bin/bash -i" ascii wide
        $dev_tcp = /\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]+\/[0-9]{1,5}/ ascii wide
        $nc_e = /\bnc(at)?(\.exe)? [^\n]{0,40}-e \/bin\/(ba)?sh/ ascii
        $mkfifo = "mkfifo /tmp/" ascii wide
        $ps_hidden = /powershell(\.exe)? +-nop +-w(indowstyle)? +hidden +-e(nc|ncodedcommand)?\b/ ascii wide nocase
        $ps_tcp = "Net.Sockets.TCPClient" ascii wide nocase
    condition:
        any of them
}
