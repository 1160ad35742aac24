use std::process::ExitCode;

use clap::Parser;
use weather_report::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    weather_common::allocator::configure();
    weather_common::init_logging();
    let settings = Cli::parse().settings().unwrap_or_else(|e| e.exit());
    match weather_report::run(settings, weather_common::shutdown::signal()).await {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
