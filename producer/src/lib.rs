//! The weather sensor.
//!
//! - [`walk`]: the pure, seeded bounded random walk.
//! - [`resume`]: finds where each sensor left off in the topic.
//! - [`publish`]: sends readings to Kafka, paced, with delivery reports and a final flush.
//! - [`writers`]: notices another process writing the same sensor, and stops this one.
//! - [`config`]: the command line, checked into [`Settings`].

pub mod config;
pub mod publish;
pub mod resume;
pub mod walk;
pub mod writers;

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::{Producer, ThreadedProducer};
use weather_common::job::{Run, Shutdown};
use weather_common::kafka::{self, Deliveries};
use weather_common::meter::counted;
use weather_common::shutdown::Stop;

pub use config::{Cli, Settings};
pub use publish::Sent;
use walk::Walk;
use writers::{Ends, Rival, Watch};

/// How often a running sensor looks at its partitions' tails for another writer.
const LOOK_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the sensor until `count` readings per sensor are acknowledged or `shutdown` resolves;
/// either way everything sent is flushed to Kafka before it returns.
pub fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> Run<anyhow::Result<Sent>> {
    start(settings, Box::pin(shutdown))
}

/// [`run`]'s future, boxed here so that it is compiled in this crate only ([`weather_common::job`]).
#[inline(never)]
fn start(settings: Settings, shutdown: Shutdown) -> Run<anyhow::Result<Sent>> {
    Box::pin(produce(settings, shutdown))
}

async fn produce(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Sent> {
    let _metrics = weather_common::metrics::serve(&settings.metrics, "weather-producer")?;
    let stop = Stop::when(shutdown);
    tokio::task::spawn_blocking(move || run_blocking(&settings, &stop)).await.context("the sensor thread panicked")?
}

fn run_blocking(settings: &Settings, stop: &Stop) -> anyhow::Result<Sent> {
    let seed = settings.seed.unwrap_or_else(rand::random);
    if settings.seed.is_none() {
        tracing::info!("random walk seed {seed} (pass --seed {seed} to repeat this run)");
    }
    let producer = publish::producer(&settings.kafka).context("creating the Kafka producer")?;
    let client = kafka::metadata_client(&settings.kafka).context("creating the Kafka client")?;
    let partitions = kafka::partitions_unless(&client, &settings.kafka, &settings.topic, stop)?;
    weather_common::metrics::health_of_job().connected();
    let watermarks = kafka::watermarks(&client, &settings.topic, &partitions).context("reading the topic's offsets")?;
    let placed = resume::placement(settings.sensor_ids.iter().map(String::as_str), &partitions);
    let Some(mut last) = resume::last_readings(&client, &settings.topic, &watermarks, &placed, stop)
        .context("reading where each sensor left off")?
    else {
        return Ok(Sent::default());
    };
    drop(client);
    let watch = Watch::new(&settings.kafka, &settings.topic, placed, &watermarks, &last)
        .context("creating the Kafka client that watches for another writer")?;
    let mut walks: Vec<Walk> = settings
        .sensor_ids
        .iter()
        .map(|id| {
            let previous = last.remove(id);
            if let Some(found) = &previous {
                let at = format!("partition {}, offset {}", found.partition, found.offset);
                match found.stray {
                    None => tracing::info!("{id} continues after record_id {} ({at})", found.last.record_id),
                    Some((offset, stray)) => tracing::warn!(
                        "{id} continues after its highest record_id {} ({at}); the newer reading at offset {offset} \
                         repeats record_id {stray} and is not where its walk stopped",
                        found.last.record_id
                    ),
                }
            }
            Walk::resume(id.clone(), seed, previous.map(|found| found.last))
        })
        .collect();
    tracing::info!(
        "sending to `{}` on {}: {}, {}, {}",
        settings.topic,
        settings.kafka.bootstrap_servers,
        counted(walks.len() as u64, "sensor"),
        settings.pace,
        settings.count.map_or("until stopped".into(), |n| format!("{} each", counted(n, "reading"))),
    );
    let (running, watching) = mpsc::channel::<()>();
    let producer = Arc::new(producer);
    let watcher = {
        let (stop, producer) = (stop.clone(), producer.clone());
        std::thread::spawn(move || watch_while_running(watch, &producer, &watching, &stop))
    };
    let sent = publish::publish(&producer, settings, &partitions, &mut walks, stop);
    drop(running);
    let (mut watch, rival) =
        watcher.join().map_err(|_| anyhow::anyhow!("the thread watching for another writer panicked"))?;
    // A last look once everything is acknowledged: a short run (a history with --count) ends
    // before its first look, and must still see a live sensor writing beside it.
    let rival = match rival {
        Some(rival) => Some(rival),
        // A run that failed says why; the broker may not answer a look now.
        None if sent.is_err() => None,
        None => watch.look(|| producer.context().acknowledged(), Ends::Confirmed).unwrap_or_else(|e| {
            tracing::warn!("could not look for another writer of these sensors at the end: {e}");
            None
        }),
    };
    match rival {
        Some(rival) => Err(anyhow::anyhow!("{rival}")),
        None => Ok(sent?),
    }
}

/// Looks for another writer every [`LOOK_INTERVAL`] until `running` is dropped; on finding one,
/// stops the sensor (whose run then ends with the error that names it).
fn watch_while_running(
    mut watch: Watch,
    producer: &ThreadedProducer<Deliveries>,
    running: &mpsc::Receiver<()>,
    stop: &Stop,
) -> (Watch, Option<Rival>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = running.recv_timeout(LOOK_INTERVAL) {
        match watch.look(|| producer.context().acknowledged(), Ends::Listed) {
            Ok(Some(rival)) => {
                stop.request();
                return (watch, Some(rival));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("looking for another writer of these sensors: {e}"),
        }
    }
    (watch, None)
}
