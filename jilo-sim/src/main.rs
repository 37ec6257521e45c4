//! `jilo-sim`: starts every simulator and prints the environment a host exports to use them.
//!
//! ```text
//! cargo run -p jilo-sim -- [--port FIRST] [--speed N | --instant] [--seed N] [--fault SERVICE:SWITCH]…
//! ```
//!
//! `--fault suchuang:out_of_funds` (or `fal:rate_limited=5`, `fal:webhooks=never`) sets a switch at
//! start; `curl -X POST $JILO_SIM_ADMIN_URL/faults/fal -d '{"down":true}'` flips one later.

use std::process::ExitCode;

use jilo_sim::{parse_fault, Pace, SimConfig, Simulators, Switches};
use serde_json::json;

const USAGE: &str = "usage: jilo-sim [--port FIRST] [--speed N | --instant] [--seed N] [--fault SERVICE:SWITCH[=VALUE]]…
  --port FIRST   listen on FIRST..FIRST+5 (FAL, 速创, Apify, Gemini, Google, admin); free ports by default
  --speed N      simulated minutes pass N times faster (default 30)
  --instant      no waiting at all (each poll moves work one stage on)
  --seed N       seeds the made-up trend data (default 7)
  --fault S:W    switches a fault on at start, e.g. suchuang:out_of_funds, fal:webhooks=never,
                 youtube:quota_exhausted, apify:rate_limited=5, gemini:server_errors=3";

fn parse(args: &[String]) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let switches = Switches::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                config.first_port = Some(v.parse().map_err(|_| format!("bad port `{v}`"))?);
            }
            "--speed" => {
                let v = value("--speed")?;
                let speed: f64 = v.parse().map_err(|_| format!("bad speed `{v}`"))?;
                if !(speed.is_finite() && speed > 0.0) {
                    return Err(format!("the speed must be above 0, not {v}"));
                }
                config.pace = Pace::Speed(speed);
            }
            "--instant" => config.pace = Pace::Instant,
            "--seed" => {
                let v = value("--seed")?;
                config.seed = v.parse().map_err(|_| format!("bad seed `{v}`"))?;
            }
            "--fault" => {
                let (service, patch) = parse_fault(&value("--fault")?)?;
                switches.patch(service, &patch)?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(config.with_switches(switches))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("jilo-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sims = match Simulators::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jilo-sim: could not listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("# jilo-sim is running; export these to point a host at it:");
    print!("{}", sims.env_lines());
    let on = sims.switches.all();
    if !on.is_empty() {
        println!("# faults on: {}", json!(on));
    }
    println!(
        "# flip faults: curl -X POST {}/faults/fal -d '{{\"down\":true}}'",
        sims.admin_url
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
