//! `legate`: the agent and its command line.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent") {
        std::process::exit(agent(&args[1..]));
    }
    std::process::exit(legate_agent::cli::run(&args));
}

fn agent(args: &[String]) -> i32 {
    let hostname = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    let cfg = match legate_agent::config::parse_agent_args(args, &hostname) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            print!("{}", legate_agent::config::agent_usage());
            return 0;
        }
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = match cfg.log_level.to_ascii_lowercase().as_str() {
            "err" => "error".to_string(),
            other => other.to_string(),
        };
        tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn"))
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(legate_agent::run::run_agent(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}
