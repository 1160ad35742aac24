use clap::Parser;
use weather_consumer::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weather_common::init_logging();
    let mut cli = Cli::parse();
    if let Some(Command::Status(args)) = cli.command.take() {
        return match tokio::task::spawn_blocking(move || {
            weather_consumer::status::status(&args).map(|s| (s, args.json))
        })
        .await
        {
            Ok(Ok((status, true))) => {
                println!("{}", serde_json::to_string_pretty(&status).expect("a status always serializes"));
                std::process::ExitCode::SUCCESS
            }
            Ok(Ok((status, false))) => {
                print!("{status}");
                std::process::ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                tracing::error!("{e:#}");
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                tracing::error!("the status look-up panicked: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(e) => e.exit(),
    };
    match weather_consumer::run(settings, weather_common::shutdown::signal()).await {
        Ok(summary) => {
            print!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
