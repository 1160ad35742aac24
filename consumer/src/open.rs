//! The start of a run, decided before anything is read or written: where every partition
//! starts and stops, from which state the output continues (its checkpoint, a mark to roll
//! back to, or nothing), said in words; then the checkpoint, the dead-letter topic and the
//! output made ready for the loop.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use weather_common::dead_letter::DeadLetters;
use weather_common::meter::{counted, thousands};
use weather_common::metrics;
use weather_common::position::{format_time, Start, Until};
use weather_common::shutdown::Stop;
use weather_common::source::{Progress, Source, TopicView};
use weather_common::Reading;

use crate::checkpoint::Checkpoint;
use crate::config::{Reference, Settings};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Writer};
use crate::sink;
use crate::sink::file::{FileOutput, OutputFile};
use crate::sink::s3::Uploader;
use crate::sink::table::{self, Joining, Opening, OutputStart, Table, TableState, WindowTable};
use crate::start::{self, Origin, Plan};
use crate::window::Windows;

/// Where a run starts and stops, decided before anything is read or written.
struct Prepared {
    view: TopicView,
    /// The output's checkpoint under this run's rules, as found (none for a rebuild).
    checkpoint: Option<Checkpoint>,
    plan: Plan,
    ends: Option<BTreeMap<i32, Option<i64>>>,
}

/// Loads the checkpoint (the file's, or without a file the reference table's state `sole`),
/// connects to Kafka (retrying while it is unreachable), and plans where every partition
/// starts and stops. `output` names the reference output in messages.
fn prepare(settings: &Settings, stop: &Stop, sole: Option<&TableState>, output: &str) -> anyhow::Result<Prepared> {
    // The topic first: a mistyped --topic is reported as a missing topic, not as other rules.
    let view = TopicView::look_up(&settings.kafka, &settings.rules.topic, stop)?;
    metrics::health_of_job().connected();
    let checkpoint = match (&settings.start, &settings.file, sole) {
        (Start::Earliest, _, _) => None,
        (_, Some(file), _) => Checkpoint::load(&file.path, &settings.rules)?,
        (_, None, Some(state)) => table_checkpoint(settings, state)?,
        (_, None, None) => None,
    };
    let positions = view.positions(&settings.kafka, &settings.group, &settings.start)?;
    if let (Some(c), Start::Committed) = (&checkpoint, &settings.start) {
        let differ: Vec<String> = positions
            .iter()
            .filter_map(|(p, &group)| Some((p, group?, c.offsets.get(p).copied().unwrap_or(0))))
            .filter(|(_, group, own)| group != own)
            .map(|(p, group, own)| format!("{p}: group {group}, checkpoint {own}"))
            .collect();
        if !differ.is_empty() {
            tracing::warn!(
                "group `{}` committed other offsets than the checkpoint of {output} ({}); following the checkpoint, \
                 which matches the output. To replay from the group's offsets, pass them as --start offset:...",
                settings.group,
                differ.join(", ")
            );
        }
    }
    let plan = start::plan(
        &settings.rules.topic,
        &settings.start,
        checkpoint.as_ref(),
        &positions,
        &view.watermarks,
        settings.allow_data_loss,
    )?;
    let ends = view.ends(settings.until)?;
    Ok(Prepared { view, checkpoint, plan, ends })
}

/// The state of a table that is the only output, as a checkpoint without a file.
fn table_checkpoint(settings: &Settings, state: &TableState) -> anyhow::Result<Option<Checkpoint>> {
    if state.offsets.is_empty() {
        return Ok(None);
    }
    let Some(windows) = state.windows.clone() else {
        anyhow::bail!(
            "the table's progress was made beside an output file, whose checkpoint holds the open windows: run with \
             that file, or rebuild the table alone with --no-file --from-beginning"
        );
    };
    let mut checkpoint = Checkpoint::new(settings.rules.clone(), windows);
    checkpoint.offsets = state.offsets.clone();
    Ok(Some(checkpoint))
}

/// The plan in words: where the output's state comes from.
fn origin(settings: &Settings, prepared: &Prepared) -> String {
    let Some(file) = &settings.file else {
        return match prepared.plan.origin {
            Origin::Resumed => "resumes at its progress in the table".to_string(),
            _ => format!("the table's rows are rebuilt from {}{}", settings.start, skips(prepared)),
        };
    };
    let output = &file.path;
    match (&prepared.plan.origin, &prepared.checkpoint) {
        (Origin::Resumed, Some(c)) => format!("resumes at its checkpoint ({})", counted(c.output_len, "byte")),
        (Origin::RolledBack { index }, Some(c)) => match c.history[*index].output_len {
            0 => format!(
                "rolled back from {} to its start (it has no mark before {}): written anew",
                counted(c.output_len, "byte"),
                settings.start
            ),
            len => format!(
                "rolled back from {} to {}, its last mark before {}: the windows after it are recomputed",
                thousands(c.output_len),
                counted(len, "byte"),
                settings.start
            ),
        },
        _ if settings.start == Start::Earliest && !Checkpoint::path_for(output).exists() && !has_bytes(output) => {
            "a new output, from the beginning".to_string()
        }
        _ if settings.start == Start::Earliest => "rebuilt from the beginning of every partition".to_string(),
        (_, Some(_)) => {
            format!("its oldest checkpoint is past {}: written anew from there{}", settings.start, skips(prepared))
        }
        (_, None) if has_bytes(output) => {
            format!("has no checkpoint under these rules: written anew from {}{}", settings.start, skips(prepared))
        }
        (_, None) => format!("a new output, from {}{}", settings.start, skips(prepared)),
    }
}

fn has_bytes(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Readings before the planned start of a new output that it will never see.
fn skipped(prepared: &Prepared) -> i64 {
    let low = |p: &i32| prepared.view.watermarks.get(p).map_or(0, |&(low, _)| low);
    prepared.plan.from.iter().map(|(p, &from)| (from - low(p)).max(0)).sum()
}

fn skips(prepared: &Prepared) -> String {
    match skipped(prepared) {
        0 => String::new(),
        1 => ": the 1 reading before it is not read (--start earliest reads it)".to_string(),
        n => format!(": the {} readings before it are not read (--start earliest reads them)", thousands(n as u64)),
    }
}

/// What a run with these settings would do, looked up without consuming, writing or
/// committing anything (`--dry-run`).
pub fn dry_run(settings: &Settings) -> anyhow::Result<start::DryRun> {
    /// Records read from the end of each partition's range to see how far each sensor goes.
    const TAIL: i64 = 64;
    let Some(file) = &settings.file else {
        anyhow::bail!("--dry-run plans from an output file's checkpoint: it does not go with --no-file");
    };
    let prepared = prepare(settings, &Stop::default(), None, &file.path.display().to_string())?;
    let Prepared { view, checkpoint, plan, ends } = &prepared;
    let mut partitions = Vec::new();
    let mut last_records: BTreeMap<String, u64> = BTreeMap::new();
    for (&partition, &from) in &plan.from {
        let high = view.watermarks[&partition].1;
        let to = ends.as_ref().and_then(|e| e.get(&partition).copied().flatten());
        partitions.push((partition, from, to, high));
        let end = to.unwrap_or(high);
        view.read_range(partition, ((end - TAIL).max(from), end), |_, key, value| {
            if let Ok(reading) = Reading::parse(value, key) {
                let last = last_records.entry(reading.sensor_id.into_owned()).or_default();
                *last = (*last).max(reading.record_id);
            }
        })?;
    }
    let fresh = Windows::new(settings.rules.window);
    let start_windows = match (&plan.origin, checkpoint) {
        (Origin::Resumed, Some(c)) => &c.windows,
        (Origin::RolledBack { index }, Some(c)) => &c.history[*index].windows,
        _ => &fresh,
    };
    // For a rebuild the checkpoint was not loaded; what it wrote is rewritten if the rules match.
    let current = match checkpoint {
        Some(c) => Some(c.clone()),
        None => Checkpoint::read(&file.path)?.filter(|c| c.rules == settings.rules),
    };
    Ok(start::DryRun {
        output: file.path.display().to_string(),
        origin: origin(settings, &prepared),
        partitions,
        until: match settings.until {
            Until::Follow => "follows the topic until stopped".to_string(),
            Until::End => "stops at the end every partition has now".to_string(),
            Until::Time(t) => format!("stops before the first reading stamped {} or later", format_time(t)),
        },
        uploads: match &file.s3 {
            Some(target) => format!(
                "{} at {}, at most every {:?} and once at the end",
                target.url(),
                target.bucket.endpoint_name(),
                file.upload_interval
            ),
            None => "none (no --s3-bucket)".to_string(),
        },
        window_days: settings.rules.window.get(),
        sensors: start::sensor_plans(start_windows, current.as_ref().map(|c| &c.windows), &last_records),
    })
}

/// Plans the run, assigns the partitions, and prepares the checkpoint (rolled back or new),
/// the dead-letter topic, the output and its uploads (with `s3`, a client of the output's
/// bucket); `None` if a stop came first.
pub fn open(
    settings: Settings,
    stop: &Stop,
    runtime: &tokio::runtime::Handle,
    s3: Option<aws_sdk_s3::Client>,
) -> anyhow::Result<Option<(Pipeline, Option<Uploader>)>> {
    let rebuild = settings.start == Start::Earliest;
    let opening =
        Opening { kafka: &settings.kafka, group: &settings.group, rules: &settings.rules, rebuild, stop, runtime };
    let open_sinks = || -> anyhow::Result<Vec<Box<dyn WindowTable>>> {
        settings.tables.iter().map(|table| table.open(&opening)).collect()
    };
    // The other outputs join the reference as they would join a file.
    let (sinks, output, prepared) = match (settings.reference, &settings.file) {
        (Reference::Table(i), _) => {
            let sinks = open_sinks()?;
            let output = sinks[i].name().to_string();
            let prepared = prepare(&settings, stop, Some(sinks[i].state()), &output)?;
            (sinks, output, prepared)
        }
        (Reference::File, Some(file)) => {
            // The tables open (each a few round trips to its server) while the file's run is
            // planned: their start-up is not added to the file's.
            let output = file.path.display().to_string();
            let (sinks, prepared) = std::thread::scope(|s| {
                let sinks = s.spawn(open_sinks);
                let prepared = prepare(&settings, stop, None, &output);
                (sinks.join(), prepared)
            });
            let sinks = sinks.map_err(|_| anyhow::anyhow!("opening the tables panicked"))??;
            (sinks, output, prepared?)
        }
        (Reference::File, None) => anyhow::bail!("the output file is the reference, and there is none"),
    };
    let message = format!(
        "reading `{}` on {} as group `{}`; {output}: {}",
        settings.rules.topic,
        settings.kafka.bootstrap_servers,
        settings.group,
        origin(&settings, &prepared)
    );
    // A new output that leaves history out is said loudly: silently skipped history is the
    // one result this consumer exists to prevent.
    if prepared.plan.origin == Origin::Fresh && skipped(&prepared) > 0 {
        tracing::warn!("{message}");
    } else {
        tracing::info!("{message}");
    }
    let Prepared { view, checkpoint, plan, ends } = prepared;
    if let (Origin::RolledBack { .. }, Some(table)) = (&plan.origin, sinks.first()) {
        anyhow::bail!(
            "--start {} rolls {output} back, and {} cannot be rolled back with it: rebuild both with --from-beginning",
            settings.start,
            table.name()
        );
    }
    let until_time = match settings.until {
        Until::Time(t) => Some(t),
        _ => None,
    };
    let source = Source::open(&settings.kafka, &settings.group, view, &plan.from)?;
    let progress = Progress::new(plan.from.clone(), ends, until_time);
    if stop.requested() {
        return Ok(None);
    }
    let dead_letters = DeadLetters::new(&settings.kafka, &settings.dead_letter_topic, runtime.clone());
    // The tables join before the file's checkpoint is written: a table starting a rebuild
    // must not be left behind a new file by a crash in between.
    let output_start = match (&plan.origin, rebuild) {
        (_, true) => OutputStart::Rebuilt,
        (Origin::Resumed, false) => OutputStart::Resumes,
        (_, false) => OutputStart::Anew,
    };
    let resume = match (&plan.origin, &checkpoint) {
        (Origin::Resumed, Some(c)) => c.offsets.clone(),
        _ => plan.from.clone(),
    };
    let new_windows = Windows::new(settings.rules.window);
    let mut tables = Vec::new();
    for (i, mut sink) in sinks.into_iter().enumerate() {
        let joining = match settings.reference != Reference::Table(i) {
            true => table::join(sink.state(), &resume, output_start).map_err(|why| {
                anyhow::anyhow!(
                    "{} cannot follow {output}: {why}. Rebuild both with --from-beginning, or write the table \
                     elsewhere (another table name or topic)",
                    sink.name(),
                )
            })?,
            false if output_start != OutputStart::Resumes => Joining::Rebuild,
            false => Joining::Along,
        };
        let catch_up = match joining {
            Joining::Rebuild => {
                sink.rebuild(&plan.from, settings.file.is_none().then_some(&new_windows))?;
                None
            }
            Joining::CatchUp(catch_up) => Some(catch_up),
            Joining::Along => None,
        };
        tables.push(Table::new(sink, settings.tables[i].kind(), catch_up));
    }
    let saving = || format!("writing the checkpoint beside {output}");
    let checkpoint = match (plan.origin, checkpoint) {
        (Origin::Resumed, Some(checkpoint)) => checkpoint,
        (Origin::RolledBack { index }, Some(mut checkpoint)) => {
            // Saved before the file is cut back, as for a new output below.
            checkpoint.roll_back(index);
            if let Some(file) = &settings.file {
                checkpoint.save(&file.path).with_context(saving)?;
            }
            checkpoint
        }
        _ => {
            // Recorded before the file is emptied, so a crash in between cannot leave an old
            // checkpoint next to a new, shorter file.
            let mut fresh = Checkpoint::new(settings.rules.clone(), new_windows);
            fresh.offsets = plan.from;
            if let Some(file) = &settings.file {
                fresh.remember();
                fresh.save(&file.path).with_context(saving)?;
            }
            fresh
        }
    };
    let mut format = sink::row_format(&settings.rules);
    let output = match &settings.file {
        Some(file) => {
            let mut output = OutputFile::open(&file.path, checkpoint.output_len)
                .with_context(|| format!("opening the output {}", file.path.display()))?;
            if output.is_empty() {
                output.write_all(format.header()).context("writing the output header")?;
            }
            Some(output)
        }
        None => None,
    };
    let uploader = match (s3, &settings.file) {
        (Some(client), Some(FileOutput { s3: Some(target), path, upload_interval })) => {
            tracing::info!("uploading to {} (at most every {upload_interval:?})", target.url());
            let _runtime = runtime.enter();
            let len = checkpoint.output_len;
            Some(Uploader::start(client, target.clone(), path.clone(), *upload_interval, len))
        }
        _ => None,
    };
    let uploads = uploader.as_ref().map(Uploader::announcer);
    let metrics = Metrics::new(&settings.rules.topic, &settings.kafka);
    let writer = Writer { settings, checkpoint, progress, output, tables, format, dead_letters, uploads, metrics };
    Ok(Some((Pipeline { source, writer }, uploader)))
}
