//! The server's settings: the configuration table's variables, `--port`, and defaults that run
//! keyless on the simulators.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Everything the server reads at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`; unset: an SQLite file in [`Config::data_dir`].
    pub database_url: Option<String>,
    /// `JILO_DATA_DIR`: the SQLite file and the stored videos (default `./jilo-data`).
    pub data_dir: PathBuf,
    /// `JILO_BIND` and `PORT` / `--port` (default 127.0.0.1:8080).
    pub addr: SocketAddr,
    /// `JILO_PUBLIC_URL`: where browsers and services reach this server (webhooks, OAuth
    /// callbacks, checkout returns); default `http://{addr}`.
    pub public_url: Option<String>,
    /// `JILO_ADMIN_TOKEN`: the bearer token of `/api/admin/*`; unset: those routes refuse.
    pub admin_token: Option<SecretString>,
    /// `STRIPE_SECRET_KEY`; unset: checkout runs on this server's simulated payment page.
    pub stripe_secret_key: Option<SecretString>,
    /// `STRIPE_WEBHOOK_SECRET`; unset with no Stripe key: a secret made for this run.
    pub stripe_webhook_secret: Option<SecretString>,
    /// `STRIPE_API_URL` (default `https://api.stripe.com`).
    pub stripe_api_url: String,
    /// The starting credits of a new account (the seed: 100).
    pub signup_credits: i64,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// The simulators' pace when some keys are missing.
    pub sim_pace: jilo_sim::Pace,
    /// Whether this process also runs the Studio's worker (claims due jobs, stores videos).
    pub run_worker: bool,
    /// Whether keys are read from the environment (the configuration table); `false` runs
    /// every part on its simulator whatever the environment holds (tests).
    pub env_keys: bool,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// How long a request may take (not the SSE streams, which last until their job ends).
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("jilo-data"),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            public_url: None,
            admin_token: None,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_url: "https://api.stripe.com".into(),
            signup_credits: 100,
            session_ttl: Duration::from_secs(30 * 86_400),
            sim_pace: jilo_sim::Pace::Speed(30.0),
            run_worker: true,
            env_keys: true,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A setting that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The variable or argument.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secret(name: &str) -> Option<SecretString> {
    var(name).map(SecretString::from)
}

impl Config {
    /// The settings from the environment, then the command line (`--port N`, `--bind IP`,
    /// `--data-dir DIR`, `--no-worker`, `--sim-speed N`).
    pub fn from_env_and_args(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        let bad = |name: &str, reason: &str| ConfigError {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let mut c = Config {
            database_url: var("DATABASE_URL"),
            public_url: var("JILO_PUBLIC_URL"),
            admin_token: secret("JILO_ADMIN_TOKEN"),
            stripe_secret_key: secret("STRIPE_SECRET_KEY"),
            stripe_webhook_secret: secret("STRIPE_WEBHOOK_SECRET"),
            ..Config::default()
        };
        if let Some(dir) = var("JILO_DATA_DIR") {
            c.data_dir = dir.into();
        }
        if let Some(url) = var("STRIPE_API_URL") {
            c.stripe_api_url = url;
        }
        if let Some(ip) = var("JILO_BIND") {
            c.addr.set_ip(
                ip.parse()
                    .map_err(|_| bad("JILO_BIND", "not an IP address"))?,
            );
        }
        if let Some(port) = var("PORT") {
            c.addr
                .set_port(port.parse().map_err(|_| bad("PORT", "not a port number"))?);
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| bad(&arg, "needs a value"));
            match arg.as_str() {
                "--port" => c.addr.set_port(
                    value()?
                        .parse()
                        .map_err(|_| bad("--port", "not a port number"))?,
                ),
                "--bind" => c.addr.set_ip(
                    value()?
                        .parse()
                        .map_err(|_| bad("--bind", "not an IP address"))?,
                ),
                "--data-dir" => c.data_dir = value()?.into(),
                "--no-worker" => c.run_worker = false,
                "--sim-speed" => {
                    let s: f64 = value()?
                        .parse()
                        .map_err(|_| bad("--sim-speed", "not a number"))?;
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(bad("--sim-speed", "must be above 0"));
                    }
                    c.sim_pace = jilo_sim::Pace::Speed(s);
                }
                other => return Err(bad(other, "unknown argument")),
            }
        }
        if c.stripe_secret_key.is_some() && c.stripe_webhook_secret.is_none() {
            return Err(bad(
                "STRIPE_WEBHOOK_SECRET",
                "required with STRIPE_SECRET_KEY (the endpoint's signing secret, whsec_…)",
            ));
        }
        Ok(c)
    }

    /// Where browsers and services reach the server.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
            .trim_end_matches('/')
            .to_owned()
    }
}
