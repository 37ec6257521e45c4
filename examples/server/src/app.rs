//! The server's one state: the Studio and every part it is built from, put together from the
//! configuration table's keys, each missing one replaced by its `jilo-sim` simulator.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jilo::plans::Plan;
use jilo::providers::apify::ApifySource;
use jilo::providers::fal::FalProvider;
use jilo::providers::gemini::GeminiModel;
use jilo::providers::suchuang::SuchuangProvider;
use jilo::providers::tokens::TokenCipher;
use jilo::providers::youtube::{GoogleOAuth, YouTubePublisher};
use jilo::store::{ObjectMediaStore, SqlStore, StoreUrl};
use jilo::{LogNotifier, Policy, Studio, SystemClock, Timestamp};
use jilo_sim::{SimConfig, Simulators};
use secrecy::SecretString;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::parts::{FinishedJobs, GoogleSignIn, Payments, StatusCache, GOOGLE_USERINFO_URL};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A part of jilo refused its settings or could not connect.
    #[error(transparent)]
    Jilo(#[from] jilo::Error),
    /// The server's own tables.
    #[error("the accounts tables: {0}")]
    Database(#[from] sqlx::Error),
    /// A file or socket.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A setting.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The plans on sale (the seed's Basic and Pro), in fen.
pub fn plans() -> Vec<Plan> {
    vec![
        Plan::new("basic", "Basic", 50, 4_900, "CNY"),
        Plan::new("pro", "Pro", 200, 14_900, "CNY"),
    ]
}

/// Everything a route reaches, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts behind [`AppState`].
pub struct Inner {
    /// The Studio every route drives.
    pub studio: Studio,
    /// The SQL store: ledger, jobs, channels, and the server's own tables beside them.
    pub store: Arc<SqlStore>,
    /// Where finished videos are kept.
    pub media: Arc<ObjectMediaStore>,
    /// Accounts, sessions, checkouts.
    pub accounts: Accounts,
    /// Sign-in with Google.
    pub signin: GoogleSignIn,
    /// The YouTube publisher (channels and uploads).
    pub youtube: Arc<YouTubePublisher>,
    /// Seals what waits in the database between requests (an OAuth verifier), with the
    /// tokens' key.
    pub cipher: Arc<TokenCipher>,
    /// Stripe, or the simulated checkout.
    pub payments: Payments,
    /// The settings.
    pub config: Config,
    /// Provider balances read lately.
    pub status: StatusCache,
    /// The simulators standing in for the services without keys.
    pub sims: Option<Arc<Simulators>>,
    /// A client for the server's own calls (Stripe, the simulated payment's delivery).
    pub http: reqwest::Client,
    /// Finished jobs read once for all the SSE watchers that end with them, by job and version.
    pub finished: FinishedJobs,
    /// Cancelled when the server stops: the SSE streams end, the worker hands its jobs back.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The Studio.
    pub fn studio(&self) -> &Studio {
        &self.0.studio
    }

    /// The server's tables.
    pub fn accounts(&self) -> &Accounts {
        &self.0.accounts
    }

    /// The simulators in use, if any part runs on them.
    pub fn sims(&self) -> Option<&Arc<Simulators>> {
        self.0.sims.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system(std::time::SystemTime::now())
    }
}

fn keyed(config: &Config, var: &str) -> bool {
    config.env_keys && std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// 32 bytes kept in a file of the data directory, made at the first start: the keyless
/// token-sealing key and payment-webhook secret, the same for every process sharing the
/// directory.
fn local_secret(dir: &Path, name: &str) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        _ => {
            let (token, _) = crate::accounts::new_token();
            let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            let tmp = dir.join(format!("{name}.{}", uuid::Uuid::new_v4().simple()));
            write_private(&tmp, &key)?;
            // Whoever renames first wins; everyone reads the winner's key.
            if std::fs::hard_link(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
                return local_secret_read(&path);
            }
            let _ = std::fs::remove_file(&tmp);
            Ok(key)
        }
    }
}

/// Writes a new file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

fn local_secret_read(path: &Path) -> std::io::Result<[u8; 32]> {
    let bytes = std::fs::read(path)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not 32 bytes", path.display()),
        )
    })
}

impl AppState {
    /// Builds every part: the store (migrated), media storage, the providers, trend source,
    /// creative model and publisher (each from its keys, else its simulator: `sims` when
    /// given, else simulators started here), and the Studio with this server's webhook URL.
    pub async fn build(config: Config, sims: Option<Arc<Simulators>>) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let needs_sims = ![
            "FAL_KEY",
            "SUCHUANG_API_KEY",
            "APIFY_TOKEN",
            "GEMINI_API_KEY",
            "YOUTUBE_CLIENT_ID",
        ]
        .iter()
        .all(|v| keyed(&config, v));
        let sims = match sims {
            Some(s) => Some(s),
            None if needs_sims => Some(Arc::new(
                Simulators::start(SimConfig::default().with_pace(config.sim_pace)).await?,
            )),
            None => None,
        };
        let sim = |what: &str| {
            sims.clone().ok_or_else(|| {
                jilo::Error::invalid(what, "no key is set and no simulator is running")
            })
        };

        let suchuang = if keyed(&config, "SUCHUANG_API_KEY") {
            SuchuangProvider::from_env()?
        } else {
            SuchuangProvider::new(jilo_sim::suchuang::KEY)?
                .with_base_url(&sim("SUCHUANG_API_KEY")?.suchuang.url)?
        };
        let fal = if keyed(&config, "FAL_KEY") {
            FalProvider::from_env()?
        } else {
            let s = sim("FAL_KEY")?;
            FalProvider::new(jilo_sim::fal::KEY)?
                .with_queue_url(&s.fal.url, None)?
                .with_jwks_url(s.fal.jwks_url())?
                .with_user_id(jilo_sim::fal::USER_ID)
        };
        let apify = if keyed(&config, "APIFY_TOKEN") {
            ApifySource::from_env()?
        } else {
            ApifySource::new(jilo_sim::apify::TOKEN)?
                .with_base_url(&sim("APIFY_TOKEN")?.apify.url)?
        };
        let gemini = if keyed(&config, "GEMINI_API_KEY") {
            GeminiModel::from_env()?
        } else {
            GeminiModel::new(jilo_sim::gemini::KEY)?
                .with_base_url(&sim("GEMINI_API_KEY")?.gemini.url)?
        };
        let real_google = keyed(&config, "YOUTUBE_CLIENT_ID");
        let make_oauth = || -> Result<GoogleOAuth, StartError> {
            Ok(if real_google {
                GoogleOAuth::from_env()?
            } else {
                let g = sim("YOUTUBE_CLIENT_ID")?.google.url.clone();
                GoogleOAuth::new(
                    jilo_sim::google::CLIENT_ID,
                    SecretString::from(jilo_sim::google::CLIENT_SECRET.to_owned()),
                )?
                .with_endpoints(
                    format!("{g}/o/oauth2/v2/auth"),
                    format!("{g}/token"),
                    format!("{g}/revoke"),
                )?
            })
        };
        let oauth = make_oauth()?;
        // Sign-in with Google: the same client, asking only who the user is.
        let signin = GoogleSignIn {
            // The scopes as Google's token endpoint reports them back.
            oauth: make_oauth()?.with_scopes([
                "openid",
                "https://www.googleapis.com/auth/userinfo.email",
                "https://www.googleapis.com/auth/userinfo.profile",
            ]),
            userinfo_url: if real_google {
                std::env::var("GOOGLE_USERINFO_URL")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| GOOGLE_USERINFO_URL.to_owned())
            } else {
                format!("{}/v1/userinfo", sim("YOUTUBE_CLIENT_ID")?.google.url)
            },
        };
        let make_cipher = || -> Result<TokenCipher, StartError> {
            Ok(if keyed(&config, "JILO_TOKEN_KEY") {
                TokenCipher::from_env()?
            } else {
                TokenCipher::new("local", &local_secret(&config.data_dir, "token.key")?)?
            })
        };
        let cipher = make_cipher()?;

        let url = match &config.database_url {
            Some(url) => StoreUrl::parse(url)?,
            None => StoreUrl::parse(&format!(
                "sqlite://{}",
                config.data_dir.join("jilo.db").display()
            ))?,
        };
        let store = Arc::new(SqlStore::open(&url).await?);
        let media_env = ["JILO_MEDIA_DIR", "JILO_MEDIA_S3_BUCKET"]
            .iter()
            .any(|v| keyed(&config, v));
        let media = Arc::new(if media_env {
            ObjectMediaStore::from_env()?
        } else {
            ObjectMediaStore::local(config.data_dir.join("media"))?
        });
        let youtube = YouTubePublisher::new(oauth, store.clone(), cipher)?;
        let youtube = Arc::new(if real_google {
            youtube
        } else {
            let g = sim("YOUTUBE_CLIENT_ID")?.google.url.clone();
            youtube.with_urls(&g, &g)?
        });
        let accounts =
            Accounts::open(crate::accounts::connect(&url).await?, store.backend()).await?;

        let public = config.public_url();
        let studio = Studio::builder()
            .provider(Arc::new(suchuang))
            .provider(Arc::new(fal))
            .store(store.clone())
            .media_store(media.clone())
            .notifier(Arc::new(LogNotifier))
            .trend_source(Arc::new(apify))
            .creative_model(Arc::new(gemini))
            .publisher(youtube.clone())
            .clock(Arc::new(SystemClock))
            .worker_name(format!("jilo-server-{}", std::process::id()))
            .policy(Policy {
                webhook_base_url: Some(format!("{public}/api/webhooks")),
                plans: plans(),
                poll_interval: Duration::from_secs(2),
                webhook_backstop: Duration::from_secs(20),
                tick_interval: Duration::from_millis(250),
                ..Policy::default()
            })
            .build()?;

        let webhook_secret = match &config.stripe_webhook_secret {
            Some(s) => s.clone(),
            None => SecretString::from(format!(
                "whsec_{}",
                hex::encode(local_secret(&config.data_dir, "payment-webhook.secret")?)
            )),
        };
        // The simulated checkout only while no real provider can spend money.
        let simulated_payments = !keyed(&config, "FAL_KEY") && !keyed(&config, "SUCHUANG_API_KEY");
        let payments = Payments::new(&config, webhook_secret, simulated_payments);
        // Installed before any job runs, so every metric of this process is recorded.
        let _ = crate::parts::prometheus();
        let http = jilo::providers::http::client_builder()?
            .build()
            .map_err(|e| jilo::Error::invalid("http client", e.to_string()))?;
        Ok(AppState(Arc::new(Inner {
            cipher: Arc::new(make_cipher()?),
            signin,
            studio,
            store,
            media,
            accounts,
            youtube,
            payments,
            status: StatusCache::default(),
            config,
            sims,
            http,
            shutdown: tokio_util::sync::CancellationToken::new(),
            finished: Default::default(),
        })))
    }
}
