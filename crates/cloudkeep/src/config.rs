//! Configuration: a TOML file (`--config FILE`) and `CLOUDKEEP_*`
//! environment variables over defaults that run.
//!
//! | variable | file key | default |
//! |---|---|---|
//! | `CLOUDKEEP_LISTEN` | `server.listen` | `127.0.0.1:8080` |
//! | `CLOUDKEEP_TLS_CERT`, `CLOUDKEEP_TLS_KEY` | `server.tls_cert`, `server.tls_key` | none (plain HTTP) |
//! | `CLOUDKEEP_SECURE_COOKIES` | `server.secure_cookies` | on when TLS is on |
//! | `CLOUDKEEP_LIMIT_SIGN_INS_BY_ADDRESS` | `server.limit_sign_ins_by_address` | `on`: failed sign-ins are also limited per client address (turn it off behind a proxy, where every client has the proxy's address; the limit per email stays) |
//! | `CLOUDKEEP_DATA_DIR` | `data_dir` | `./cloudkeep-data` |
//! | `CLOUDKEEP_STORE_URL` | `store.url` | `sqlite://{data_dir}/cloudkeep.db` |
//! | `CLOUDKEEP_SPEND_COLUMN_ROWS` | `store.spend_column_rows` | `40000000` (cost rows held in memory in columns for the spend analyses, all organisations together, about 20 bytes each; an organisation that would not fit is analysed in SQL; `0` turns the projection off) |
//! | `CLOUDKEEP_KEY_FILE` | `keys.key_file` | `{data_dir}/master.key` |
//! | `CLOUDKEEP_AUDIT_KEY_FILE` | `keys.audit_key_file` | `audit.key` beside the master key file (the keys that seal the audit chain; keep it apart from the database and never delete a key from it) |
//! | `CLOUDKEEP_AZURE_AUTHORITY` | `azure.authority_host` | `https://login.microsoftonline.com` |
//! | `CLOUDKEEP_AZURE_ARM` | `azure.arm_endpoint` | `https://management.azure.com` |
//! | `CLOUDKEEP_AZURE_CA_FILE` | `azure.ca_file` | none (an extra CA to trust, e.g. the simulator's) |
//! | `CLOUDKEEP_SCHEDULER` | `scheduler.enabled` | `on` (`off` for an API-only instance) |
//! | `CLOUDKEEP_SCHEDULER_POLL_SECS` | `scheduler.poll_secs` | `15` |
//! | `CLOUDKEEP_SCHEDULER_LEASE_SECS` | `scheduler.lease_secs` | `120` (how long a dead process's job waits before another takes it over) |
//! | `CLOUDKEEP_PUBLIC_URL` | `server.public_url` | `http(s)://{listen}` (the URL browsers reach; the consent flow's redirect URI is under it) |
//! | `CLOUDKEEP_OPERATOR_CLIENT_ID` | `operator.client_id` | none (the consent flow is off without it) |
//! | `CLOUDKEEP_OPERATOR_CLIENT_SECRET` | `operator.client_secret` | none |
//! | `CLOUDKEEP_PARTNER_ID` | `operator.partner_id` | none (no Partner Admin Link) |
//! | `CLOUDKEEP_WEBHOOKS_ALLOW_PRIVATE` | `webhooks.allow_private` | `off`: webhooks go to public HTTPS receivers only (`on` allows loopback and private addresses, and plain HTTP to them) |
//! | `CLOUDKEEP_LOG` | — | `info` (a tracing filter) |
//! | `CLOUDKEEP_LOG_FORMAT` | `log.format` | `json` (`text` for people) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cloudkeep_domain::{OperatorApp, SecretString};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    keys: KeysSection,
    #[serde(default)]
    azure: AzureSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    scheduler: SchedulerSection,
    #[serde(default)]
    operator: OperatorSection,
    #[serde(default)]
    webhooks: WebhooksSection,
}

/// Where alert webhooks may be delivered.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhooksSection {
    allow_private: Option<bool>,
}

/// The operator's own multi-tenant application, for onboarding by consent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorSection {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    partner_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerSection {
    enabled: Option<bool>,
    poll_secs: Option<u64>,
    lease_secs: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    secure_cookies: Option<bool>,
    limit_sign_ins_by_address: Option<bool>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    url: Option<String>,
    spend_column_rows: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    /// Only `local` today.
    provider: Option<String>,
    key_file: Option<PathBuf>,
    audit_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureSection {
    authority_host: Option<String>,
    arm_endpoint: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<String>,
}

/// The resolved configuration every command uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Option<cloudkeep_server::TlsFiles>,
    pub secure_cookies: bool,
    /// Failed sign-ins are limited per client address too.
    pub limit_sign_ins_by_address: bool,
    pub store_url: String,
    /// Cost rows the spend projections may hold in memory, in all.
    pub spend_column_rows: u64,
    pub key_file: PathBuf,
    /// The keys that seal the audit chain.
    pub audit_key_file: PathBuf,
    pub azure_authority: String,
    pub azure_arm: String,
    pub azure_ca_file: Option<PathBuf>,
    pub log_json: bool,
    pub scheduler: bool,
    pub scheduler_poll: std::time::Duration,
    /// How long a claimed job is its process's without a heartbeat.
    pub scheduler_lease: chrono::Duration,
    pub public_url: String,
    pub operator: Option<OperatorApp>,
    /// Webhooks may go to loopback and private addresses (and over plain
    /// HTTP to them).
    pub webhooks_allow_private: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Loads `file` (if given), then the environment; `data_dir` (from
    /// `--data-dir`) wins over both for the store and key file.
    pub fn load(file: Option<&Path>, data_dir: Option<&Path>) -> Result<Config> {
        let parsed: FileConfig = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| {
                    format!("{} is not a valid cloudkeep config", path.display())
                })?
            }
            None => FileConfig::default(),
        };
        let dir = data_dir
            .map(Path::to_path_buf)
            .or_else(|| env("CLOUDKEEP_DATA_DIR").map(PathBuf::from))
            .or(parsed.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./cloudkeep-data"));
        let listen = match env("CLOUDKEEP_LISTEN") {
            Some(v) => v.parse().with_context(|| {
                format!("CLOUDKEEP_LISTEN='{v}' is not an address such as 127.0.0.1:8080")
            })?,
            None => parsed
                .server
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        };
        let cert = env("CLOUDKEEP_TLS_CERT")
            .map(PathBuf::from)
            .or(parsed.server.tls_cert);
        let key = env("CLOUDKEEP_TLS_KEY")
            .map(PathBuf::from)
            .or(parsed.server.tls_key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(cloudkeep_server::TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!(
                "HTTPS needs both a certificate and a key: set server.tls_cert and server.tls_key (or CLOUDKEEP_TLS_CERT and CLOUDKEEP_TLS_KEY)"
            ),
        };
        let secure_cookies = match env("CLOUDKEEP_SECURE_COOKIES") {
            Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
            None => parsed.server.secure_cookies.unwrap_or(tls.is_some()),
        };
        let limit_sign_ins_by_address = match env("CLOUDKEEP_LIMIT_SIGN_INS_BY_ADDRESS") {
            Some(v) => !matches!(v.as_str(), "off" | "0" | "false" | "no"),
            None => parsed.server.limit_sign_ins_by_address.unwrap_or(true),
        };
        if let Some(p) = parsed.keys.provider.as_deref().filter(|p| *p != "local") {
            bail!("keys.provider '{p}' is not supported; use 'local'");
        }
        let from_dir = data_dir.is_some();
        let store_url = if from_dir {
            format!("sqlite://{}", dir.join("cloudkeep.db").display())
        } else {
            env("CLOUDKEEP_STORE_URL")
                .or(parsed.store.url)
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("cloudkeep.db").display()))
        };
        let spend_column_rows = match env("CLOUDKEEP_SPEND_COLUMN_ROWS") {
            Some(v) => v.parse().with_context(|| {
                format!("CLOUDKEEP_SPEND_COLUMN_ROWS='{v}' is not a number of rows")
            })?,
            None => parsed
                .store
                .spend_column_rows
                .unwrap_or(cloudkeep_store::DEFAULT_SPEND_COLUMN_ROWS),
        };
        let key_file = if from_dir {
            dir.join("master.key")
        } else {
            env("CLOUDKEEP_KEY_FILE")
                .map(PathBuf::from)
                .or(parsed.keys.key_file)
                .unwrap_or_else(|| dir.join("master.key"))
        };
        // Beside the master key file unless named: apart from the database
        // in the same way.
        let audit_key_file = if from_dir {
            dir.join("audit.key")
        } else {
            env("CLOUDKEEP_AUDIT_KEY_FILE")
                .map(PathBuf::from)
                .or(parsed.keys.audit_key_file)
                .unwrap_or_else(|| key_file.with_file_name("audit.key"))
        };
        let log_json = env("CLOUDKEEP_LOG_FORMAT")
            .or(parsed.log.format)
            .is_none_or(|f| f != "text");
        let scheduler = match env("CLOUDKEEP_SCHEDULER") {
            Some(v) => !matches!(v.as_str(), "off" | "0" | "false" | "no"),
            None => parsed.scheduler.enabled.unwrap_or(true),
        };
        let poll = match env("CLOUDKEEP_SCHEDULER_POLL_SECS") {
            Some(v) => v.parse().with_context(|| {
                format!("CLOUDKEEP_SCHEDULER_POLL_SECS='{v}' is not a number of seconds")
            })?,
            None => parsed.scheduler.poll_secs.unwrap_or(15),
        };
        let lease = match env("CLOUDKEEP_SCHEDULER_LEASE_SECS") {
            Some(v) => v.parse().with_context(|| {
                format!("CLOUDKEEP_SCHEDULER_LEASE_SECS='{v}' is not a number of seconds")
            })?,
            None => parsed.scheduler.lease_secs.unwrap_or(120),
        };
        let public_url = env("CLOUDKEEP_PUBLIC_URL")
            .or(parsed.server.public_url)
            .unwrap_or_else(|| default_public_url(listen, tls.is_some()));
        let operator = operator(parsed.operator)?;
        let webhooks_allow_private = match env("CLOUDKEEP_WEBHOOKS_ALLOW_PRIVATE") {
            Some(v) => matches!(v.as_str(), "on" | "1" | "true" | "yes"),
            None => parsed.webhooks.allow_private.unwrap_or(false),
        };
        Ok(Config {
            webhooks_allow_private,
            public_url,
            operator,
            listen,
            tls,
            secure_cookies,
            limit_sign_ins_by_address,
            store_url,
            spend_column_rows,
            key_file,
            audit_key_file,
            azure_authority: env("CLOUDKEEP_AZURE_AUTHORITY")
                .or(parsed.azure.authority_host)
                .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
            azure_arm: env("CLOUDKEEP_AZURE_ARM")
                .or(parsed.azure.arm_endpoint)
                .unwrap_or_else(|| "https://management.azure.com".into()),
            azure_ca_file: env("CLOUDKEEP_AZURE_CA_FILE")
                .map(PathBuf::from)
                .or(parsed.azure.ca_file),
            log_json,
            scheduler,
            scheduler_poll: std::time::Duration::from_secs(poll.max(1)),
            scheduler_lease: chrono::Duration::seconds(i64::from(lease.max(1))),
        })
    }

    /// Points the configuration at a server listening on `addr` (for a
    /// listener bound to port 0, once its port is known).
    pub fn listening_on(&mut self, addr: SocketAddr) {
        self.listen = addr;
        self.public_url = default_public_url(addr, self.tls.is_some());
    }

    /// Where webhooks may go.
    pub fn webhooks(&self) -> cloudkeep_sync::webhooks::WebhookPolicy {
        cloudkeep_sync::webhooks::WebhookPolicy {
            allow_private: self.webhooks_allow_private,
        }
    }

    pub fn azure(&self) -> Result<cloudkeep_azure::AzureConfig> {
        let extra_ca_pem = match &self.azure_ca_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the Azure CA file {}", p.display()))?,
            ),
            None => None,
        };
        Ok(cloudkeep_azure::AzureConfig {
            authority_host: self.azure_authority.clone(),
            arm_endpoint: self.azure_arm.clone(),
            extra_ca_pem,
            timeout: std::time::Duration::from_secs(30),
        })
    }
}

fn default_public_url(listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

/// The operator's application: both its id and secret, or neither.
fn operator(file: OperatorSection) -> Result<Option<OperatorApp>> {
    let client_id = env("CLOUDKEEP_OPERATOR_CLIENT_ID").or(file.client_id);
    let secret = env("CLOUDKEEP_OPERATOR_CLIENT_SECRET")
        .map(SecretString::new)
        .or(file.client_secret);
    let partner_id = env("CLOUDKEEP_PARTNER_ID").or(file.partner_id);
    if let Some(p) = &partner_id {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            bail!("the partner id '{p}' is not a Microsoft Partner Network id (digits only)");
        }
    }
    match (client_id, secret) {
        (Some(client_id), Some(client_secret)) => Ok(Some(OperatorApp {
            client_id,
            client_secret,
            partner_id,
        })),
        (None, None) => Ok(None),
        _ => bail!(
            "the operator's application needs both a client id and a client secret: set operator.client_id and operator.client_secret (or CLOUDKEEP_OPERATOR_CLIENT_ID and CLOUDKEEP_OPERATOR_CLIENT_SECRET)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_and_files_override() {
        let c = Config::load(None, None).expect("defaults");
        assert_eq!(c.listen.port(), 8080);
        assert!(c.store_url.starts_with("sqlite://"));
        let dir = std::env::temp_dir().join(format!("ck-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("cloudkeep.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9999\"\n[store]\nurl = \"postgres://x@h/db\"\n",
        )
        .expect("write");
        let c = Config::load(Some(&file), None).expect("file");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.store_url, "postgres://x@h/db");
        assert_eq!(c.scheduler_lease, chrono::Duration::seconds(120));
        std::fs::write(&file, "[scheduler]\nlease_secs = 20\npoll_secs = 2\n").expect("write");
        let c = Config::load(Some(&file), None).expect("file");
        assert_eq!(
            (c.scheduler_lease, c.scheduler_poll),
            (
                chrono::Duration::seconds(20),
                std::time::Duration::from_secs(2)
            )
        );
        let c = Config::load(Some(&file), Some(&dir)).expect("data dir");
        assert!(
            c.store_url.ends_with("cloudkeep.db"),
            "--data-dir points at a demo's store"
        );
        std::fs::write(&file, "[server]\nlisten = \"nope\"\n").expect("write");
        assert!(Config::load(Some(&file), None).is_err());
        std::fs::write(&file, "[operator]\nclient_id = \"app\"\n").expect("write");
        assert!(
            Config::load(Some(&file), None).is_err(),
            "an operator application needs its secret too"
        );
        std::fs::write(
            &file,
            "[server]\npublic_url = \"https://ck.example.com\"\n[operator]\nclient_id = \"app\"\nclient_secret = \"s3cret\"\npartner_id = \"4567890\"\n",
        )
        .expect("write");
        let c = Config::load(Some(&file), None).expect("operator");
        let op = c.operator.as_ref().expect("operator");
        assert_eq!(
            (op.client_id.as_str(), op.client_secret.expose()),
            ("app", "s3cret")
        );
        assert_eq!(c.public_url, "https://ck.example.com");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret stays out of Debug"
        );
        std::fs::write(
            &file,
            "[operator]\nclient_id = \"app\"\nclient_secret = \"s\"\npartner_id = \"MPN-1\"\n",
        )
        .expect("write");
        assert!(
            Config::load(Some(&file), None).is_err(),
            "a partner id is digits"
        );
        std::fs::write(&file, "[webhooks]\nallow_private = true\n").expect("write");
        assert!(
            Config::load(Some(&file), None)
                .expect("webhooks")
                .webhooks()
                .allow_private
        );
        std::fs::write(&file, "[serverr]\n").expect("write");
        assert!(
            Config::load(Some(&file), None).is_err(),
            "unknown keys are refused"
        );
    }
}
