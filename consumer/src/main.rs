use clap::Parser;
use weather_consumer::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weather_common::init_logging();
    let settings = match Cli::parse().settings() {
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
