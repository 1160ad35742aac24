use clap::Parser;
use weather_producer::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weather_common::init_logging();
    let config = Config::parse();
    match weather_producer::run(config, weather_common::shutdown::signal()).await {
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
