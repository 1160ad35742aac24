use clap::Parser;
use weather_producer::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weather_common::allocator::configure();
    weather_common::init_logging();
    let settings = Cli::parse().settings().unwrap_or_else(|e| e.exit());
    match weather_producer::run(settings, weather_common::shutdown::signal()).await {
        Ok(sent) => {
            println!("{sent}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
