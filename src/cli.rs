//! Command line: parses arguments, calls the library, prints results on stdout and one-line
//! errors on stderr. The contract (fields, exit codes) is in `docs/cli.md`.
//! Sits on top: may import any module; nothing imports it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::av::engine::Progress;
use crate::av::{self, hw, probe};
use crate::config::ApplianceConfig;
use crate::pipeline::{self, BackendChoice};
use crate::profile::{self, verify};
use crate::qc::loudness;

#[derive(Parser)]
#[command(
    name = "antenne",
    version,
    about = "Broadcast media appliance: probe, transcode, check"
)]
struct Cli {
    /// More log output (libav warnings included).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance service: catalog, users and rights, HTTP control API.
    Serve {
        /// Configuration file (default: firmware-config/antenne.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one media job given as JSON on stdin (the service starts these; not for people).
    Worker,
    /// Print the OpenAPI document of the HTTP API (as served at /openapi.json).
    Openapi,
    /// Technical metadata of a media file (ffprobe names and values).
    Probe {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// Measure BS.1770-4 loudness (integrated, range, true peak).
        #[arg(long)]
        loudness: bool,
    },
    /// Transcode a file to every output of a profile (one decode, one encoder thread per output).
    Transcode {
        input: PathBuf,
        #[arg(long, short)]
        profile: String,
        #[arg(long = "output-dir", short = 'o')]
        output_dir: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        #[arg(long)]
        profiles_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Skip the verification that decodes each output and checks it against the profile.
        #[arg(long)]
        no_verify: bool,
    },
    /// Check an existing file against a profile's output (as done after every transcode).
    Verify {
        file: PathBuf,
        #[arg(long, short)]
        profile: String,
        /// Which output of the profile (needed when it has several and the file name does not say).
        #[arg(long)]
        output: Option<String>,
        /// The file it was made from: its duration and timecode must carry over.
        #[arg(long)]
        source: Option<PathBuf>,
        #[arg(long)]
        profiles_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration, the machine's capabilities and every profile; non-zero exit
    /// naming what is wrong.
    Validate {
        /// Configuration file (default: firmware-config/antenne.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        profiles_dir: Option<PathBuf>,
    },
    /// List the delivery profiles (embedded, plus firmware-config/profiles/*.toml).
    Profiles {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        profiles_dir: Option<PathBuf>,
    },
    /// Which FFmpeg libraries, encoders and hardware backends this machine offers.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Make a test clip with antenne's own encoder and transcode it with the default profile.
    Demo {
        #[arg(short, long, default_value = "antenne-demo")]
        output_dir: PathBuf,
        #[arg(long, default_value = "web-h264")]
        profile: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init(cli.verbose);
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn run(cmd: Cmd) -> Res {
    match cmd {
        Cmd::Serve { config } => cmd_serve(config.as_deref()),
        Cmd::Worker => std::process::exit(crate::jobs::worker::main()),
        Cmd::Openapi => {
            use utoipa::OpenApi;
            println!("{}", crate::api::ApiDoc::openapi().to_pretty_json()?);
            Ok(())
        }
        Cmd::Probe {
            file,
            json,
            loudness,
        } => cmd_probe(&file, json, loudness),
        Cmd::Transcode {
            input,
            profile,
            output_dir,
            backend,
            profiles_dir,
            json,
            no_verify,
        } => cmd_transcode(
            &input,
            &profile,
            &output_dir,
            backend,
            profiles_dir.as_deref(),
            json,
            !no_verify,
        ),
        Cmd::Verify {
            file,
            profile,
            output,
            source,
            profiles_dir,
            json,
        } => cmd_verify(
            &file,
            &profile,
            output.as_deref(),
            source.as_deref(),
            profiles_dir.as_deref(),
            json,
        ),
        Cmd::Validate {
            config,
            profiles_dir,
        } => cmd_validate(config.as_deref(), profiles_dir.as_deref()),
        Cmd::Profiles { json, profiles_dir } => cmd_profiles(json, profiles_dir.as_deref()),
        Cmd::Doctor { json } => cmd_doctor(json),
        Cmd::Demo {
            output_dir,
            profile,
        } => cmd_demo(&output_dir, &profile),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn cmd_probe(file: &Path, json: bool, with_loudness: bool) -> Res {
    let mut r = probe::probe(file)?;
    if with_loudness {
        if r.audio.is_empty() {
            return Err(format!(
                "{}: has no audio stream to measure loudness of",
                file.display()
            )
            .into());
        }
        let prog = loudness::measure_programme(&r)?;
        let prog_streams = prog.streams.clone();
        for a in r.audio.iter_mut() {
            let l = if prog_streams == [a.index] {
                prog.clone()
            } else {
                loudness::measure(file, &[a.index])?
            };
            a.loudness = Some(serde_json::json!({
                "integrated_lufs": l.integrated_lufs,
                "range_lu": l.range_lu,
                "true_peak_dbtp": l.true_peak_dbtp,
            }));
        }
        r.loudness = Some(serde_json::to_value(&prog)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let c = &r.container;
    println!("file        {} ({} bytes)", r.file, r.size_bytes);
    println!(
        "container   {} ({}), duration {} s, start {} s, {} b/s, timecode {}",
        c.format,
        opt(&c.format_long),
        opt(&c.duration_s.map(|d| format!("{d:.3}"))),
        opt(&c.start_s.map(|d| format!("{d:.3}"))),
        opt(&c.bit_rate),
        opt(&c.start_timecode)
    );
    for v in &r.video {
        println!(
            "video #{}    {} {} level {} {}x{} SAR {} DAR {} {} fps {} {} {}-bit {} primaries {} transfer {} matrix {} range {} {} b/s",
            v.index,
            v.codec,
            opt(&v.profile),
            opt(&v.level),
            v.width,
            v.height,
            opt(&v.sample_aspect_ratio),
            opt(&v.display_aspect_ratio),
            opt(&v.frame_rate),
            opt(&v.field_order),
            opt(&v.pix_fmt),
            opt(&v.bit_depth),
            opt(&v.chroma_subsampling),
            opt(&v.color_primaries),
            opt(&v.color_transfer),
            opt(&v.color_matrix),
            opt(&v.color_range),
            opt(&v.bit_rate)
        );
    }
    for a in &r.audio {
        println!(
            "audio #{}    {} {} Hz {} ch ({}) {} {}-bit {} b/s language {}",
            a.index,
            a.codec,
            a.sample_rate,
            a.channels,
            opt(&a.channel_layout),
            opt(&a.sample_fmt),
            opt(&a.bit_depth),
            opt(&a.bit_rate),
            opt(&a.language)
        );
    }
    for s in r.subtitle.iter().chain(&r.data) {
        println!("{} #{}  {}", s.codec_type, s.index, opt(&s.codec));
    }
    if let Some(l) = &r.loudness {
        println!(
            "loudness    integrated {} LUFS, range {} LU, true peak {} dBTP (streams {})",
            l["integrated_lufs"], l["range_lu"], l["true_peak_dbtp"], l["streams"]
        );
    }
    Ok(())
}

fn cmd_transcode(
    input: &Path,
    profile_name: &str,
    outdir: &Path,
    backend: BackendChoice,
    profiles_dir: Option<&Path>,
    json: bool,
    verify: bool,
) -> Res {
    let prof = profile::find(profile_name, profile::profiles_dir(profiles_dir).as_deref())?;
    let (src, opened) = probe::probe_open(input)?;
    pipeline::prepare_outdir(outdir)?;
    let job = pipeline::compile(&src, &prof, outdir, backend)?;
    let cancel = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, cancel.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, cancel.clone())?;
    let progress = Arc::new(Progress::default());
    let done = Arc::new(AtomicBool::new(false));
    let reporter = {
        let progress = progress.clone();
        let done = done.clone();
        let total = job.expected_frames;
        let duration = job.duration_s;
        std::thread::spawn(move || report_progress(&progress, &done, total, duration))
    };
    let started = Instant::now();
    let result = pipeline::run(&job, Some(opened), progress.clone(), cancel);
    done.store(true, Ordering::SeqCst);
    let _ = reporter.join();
    let report = result?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let fps = report.frames_decoded as f64 / secs;
    let speed = job.duration_s.map(|d| d / secs);
    let mut verdicts = Vec::new();
    if verify {
        for (planned, facts) in job.outputs.iter().zip(&job.facts) {
            let out = &prof.outputs[planned.index];
            let rep = verify::verify(
                &planned.path,
                &prof.name,
                out,
                prof.loudness.as_ref(),
                facts,
            )?;
            let path = verify::write_report(&rep, &planned.path)?;
            print_verdict(&rep);
            verdicts
                .push(serde_json::json!({ "output": out.name, "pass": rep.pass, "report": path }));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "outputs": job.outputs,
                "frames": report.frames_decoded,
                "decode_errors": report.decode_errors,
                "seconds": secs,
                "fps": fps,
                "speed": speed,
                "backend": job.outputs.first().map(|o| o.backend),
                "verify": verdicts,
            }))?
        );
    } else {
        for o in &job.outputs {
            println!("output: {}", o.path.display());
        }
        eprintln!(
            "done: {} frames in {secs:.1} s ({fps:.1} fps, {} real time)",
            report.frames_decoded,
            speed.map_or("-".into(), |s| format!("{s:.2}x"))
        );
    }
    let failed = verdicts.iter().filter(|v| v["pass"] == false).count();
    if failed > 0 {
        return Err(format!(
            "{failed} output(s) failed verification against profile {}",
            prof.name
        )
        .into());
    }
    Ok(())
}

fn print_verdict(rep: &verify::VerifyReport) {
    let failures: Vec<_> = rep.failures().collect();
    if failures.is_empty() {
        eprintln!("verify: {}: pass ({} checks)", rep.file, rep.checks.len());
    } else {
        eprintln!(
            "verify: {}: FAIL ({} of {} checks)",
            rep.file,
            failures.len(),
            rep.checks.len()
        );
        for f in failures {
            eprintln!(
                "  {}: expected {}, measured {}",
                f.name, f.expected, f.measured
            );
        }
    }
}

fn cmd_verify(
    file: &Path,
    profile_name: &str,
    output: Option<&str>,
    source: Option<&Path>,
    profiles_dir: Option<&Path>,
    json: bool,
) -> Res {
    let prof = profile::find(profile_name, profile::profiles_dir(profiles_dir).as_deref())?;
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let out = match output {
        Some(name) => prof.outputs.iter().find(|o| o.name == name),
        None if prof.outputs.len() == 1 => prof.outputs.first(),
        None => prof
            .outputs
            .iter()
            .find(|o| stem.ends_with(&format!("_{}", o.name))),
    }
    .ok_or_else(|| {
        let names: Vec<&str> = prof.outputs.iter().map(|o| o.name.as_str()).collect();
        format!(
            "{}: say which output of profile {} it should meet with --output ({})",
            file.display(),
            prof.name,
            names.join(", ")
        )
    })?;
    let mut facts = verify::SourceFacts::default();
    if let Some(src) = source {
        let s = probe::probe(src)?;
        facts.picture = crate::pipeline::picture_for(&s, out);
        facts.duration_s = s
            .video
            .first()
            .and_then(|v| v.duration_s)
            .or(s.duration_s());
        facts.frame_rate = s
            .video
            .first()
            .and_then(|v| v.frame_rate.as_deref())
            .and_then(|r| r.parse().ok());
        facts.start_timecode = s.container.start_timecode.clone();
    } else if let Ok(own) = probe::probe(file) {
        // No source to say how large the picture was: a profile that does not upscale may have
        // made the file at its own size, which is what it would make from a source that size.
        facts.picture = crate::pipeline::picture_for(&own, out);
    }
    let rep = verify::verify(file, &prof.name, out, prof.loudness.as_ref(), &facts)?;
    let path = verify::write_report(&rep, file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        for c in &rep.checks {
            println!(
                "{} {:<28} expected {:<28} measured {}",
                if c.pass { "ok  " } else { "FAIL" },
                c.name,
                c.expected,
                c.measured
            );
        }
        println!("report: {}", path.display());
    }
    if !rep.pass {
        return Err(format!(
            "{}: does not meet profile {} output {}",
            file.display(),
            prof.name,
            out.name
        )
        .into());
    }
    Ok(())
}

fn report_progress(
    progress: &Progress,
    done: &AtomicBool,
    total: Option<u64>,
    duration: Option<f64>,
) {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} frames {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_line = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        let frames = progress.frames_decoded.load(Ordering::Relaxed);
        let t = start.elapsed().as_secs_f64().max(1e-3);
        let fps = frames as f64 / t;
        let media = progress.media_us.load(Ordering::Relaxed) as f64 / 1e6;
        let speed = media / t;
        let eta = duration
            .filter(|_| speed > 0.0)
            .map(|d| ((d - media) / speed).max(0.0));
        let eta_s = eta.map_or("-".into(), |e| format!("{e:.0}s"));
        if let Some(b) = &bar {
            b.set_position(frames);
            b.set_message(format!("{fps:.1} fps {speed:.2}x eta {eta_s}"));
        } else if last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            eprintln!(
                "progress: frame={frames}/{} fps={fps:.1} speed={speed:.2}x eta={eta_s}",
                total.map_or("?".into(), |t| t.to_string())
            );
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

fn load_config(
    config: Option<&Path>,
) -> Result<crate::config::appliance::ApplianceConfig, Box<dyn std::error::Error>> {
    let default = Path::new("firmware-config/antenne.toml");
    let file = config.or_else(|| default.is_file().then_some(default));
    let env: Vec<(String, String)> = std::env::vars().collect();
    Ok(crate::config::appliance::load(file, &env)?)
}

fn cmd_serve(config: Option<&Path>) -> Res {
    let cfg = load_config(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("antenne-api")
        .build()?;
    rt.block_on(crate::app::serve(cfg))?;
    Ok(())
}

/// Checks the whole configuration — the appliance's, every profile, every workflow — and the
/// machine, and reports every mistake at once, one to a line, each naming its file and key.
fn cmd_validate(config: Option<&Path>, profiles_dir: Option<&Path>) -> Res {
    let (cfg, mut errs) = appliance_mistakes(config);
    // The profiles the service would load (its own directory), and those asked about.
    let serve_dir = cfg.as_ref().and_then(|c| {
        let d = &c.transcode.profiles_dir;
        d.is_dir().then(|| d.clone())
    });
    let dir = profile::profiles_dir(profiles_dir.or(serve_dir.as_deref()));
    let (profiles, profile_errs) = profile::load_each(dir.as_deref());
    errs.extend(profile_errs.iter().map(ToString::to_string));
    let mut names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    if profiles_dir.is_some() && profiles_dir != serve_dir.as_deref() {
        let served = profile::load_each(profile::profiles_dir(serve_dir.as_deref()).as_deref()).0;
        names = served.into_iter().map(|p| p.name).collect();
    }
    let wdir = cfg
        .as_ref()
        .map(|c| c.jobs.workflows_dir.clone())
        .filter(|d| d.is_dir());
    let (workflows, workflow_errs) = crate::jobs::workflow::load_each(wdir.as_deref(), &names);
    errs.extend(workflow_errs.iter().map(ToString::to_string));
    if let Some(c) = &cfg {
        errs.extend(crate::jobs::workflow::undeclared_destinations(
            &workflows,
            &crate::app::sendable_destinations(c),
        ));
    }
    if !errs.is_empty() {
        for e in &errs {
            eprintln!("error: {e}");
        }
        return Err(format!("the configuration has {} mistake(s)", errs.len()).into());
    }
    if let Some(cfg) = &cfg {
        println!("configuration: {} valid", cfg.origin);
        println!("backend: {}", cfg.transcode.backend);
    }
    println!("workflows: {} valid", workflows.len());
    println!("profiles: {} valid", profiles.len());
    Ok(())
}

/// The appliance's configuration as `validate` reads it (`None` when its file cannot be read
/// or is not TOML), and every mistake of it: keys refused, values out of bounds, schedules that
/// do not parse, a machine or backend that cannot run it.
fn appliance_mistakes(config: Option<&Path>) -> (Option<ApplianceConfig>, Vec<String>) {
    use crate::config::appliance;
    let mut errs: Vec<String> = Vec::new();
    let default = Path::new("firmware-config/antenne.toml");
    let file = config.or_else(|| default.is_file().then_some(default));
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = match appliance::read_all(file, &env) {
        Ok((cfg, refused)) => cfg_with(cfg, refused, &mut errs),
        Err(e) => {
            errs.push(e.to_string());
            return (None, errs);
        }
    };
    if let Err(e) = crate::app::check_machine(&cfg) {
        errs.push(format!("{}: {e}", cfg.origin));
    }
    if let Err(e) = backend_present(&cfg.transcode.backend) {
        errs.push(format!("{}: transcode.backend: {e}", cfg.origin));
    }
    (Some(cfg), errs)
}

/// `cfg` completed, its refused keys and its problems added to `errs`.
fn cfg_with(
    cfg: ApplianceConfig,
    refused: Vec<crate::config::ConfigError>,
    errs: &mut Vec<String>,
) -> ApplianceConfig {
    use crate::config::appliance;
    errs.extend(refused.iter().map(ToString::to_string));
    errs.extend(appliance::problems(&cfg).iter().map(ToString::to_string));
    for (i, r) in cfg.live.recordings.iter().enumerate() {
        if let Some(Err(e)) = r
            .schedule
            .as_deref()
            .map(crate::jobs::trigger::Schedule::parse)
        {
            errs.push(format!(
                "{}: live.recordings.schedule: [[live.recordings]] #{}: {e}",
                cfg.origin,
                i + 1
            ));
        }
    }
    appliance::with_absolute_roots(cfg)
}

/// `Err` naming why when a GPU backend the configuration insists on is absent here.
fn backend_present(backend: &str) -> Result<(), String> {
    let b = match backend {
        "nvenc" => hw::Backend::Nvenc,
        "vaapi" => hw::Backend::Vaapi,
        "qsv" => hw::Backend::Qsv,
        _ => return Ok(()),
    };
    let st = hw::status_of(b);
    if st.available {
        return Ok(());
    }
    Err(format!(
        "{backend} is not available on this machine: {}",
        st.error.unwrap_or_default()
    ))
}

fn cmd_profiles(json: bool, dir: Option<&Path>) -> Res {
    let all = profile::load_all(profile::profiles_dir(dir).as_deref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for p in &all {
        println!("{:<24} {}", p.name, p.description);
        for o in &p.outputs {
            let v = o.video.as_ref().map_or("no video".into(), |v| {
                format!("{} {}x{} {:?}", v.codec, v.width, v.height, v.scan).to_lowercase()
            });
            let a = o.audio.as_ref().map_or("no audio".into(), |a| {
                format!(
                    "{} {} track(s) {}",
                    a.codec,
                    a.tracks.len(),
                    a.tracks.join("+")
                )
            });
            println!("  {:<10} .{:<4} {v}; {a}", o.name, o.extension());
        }
    }
    Ok(())
}

fn cmd_doctor(json: bool) -> Res {
    let libs = av::library_versions();
    let backends = hw::detect();
    let live = crate::hub::registry::Transports::builtin().report();
    if json {
        let l: serde_json::Map<String, serde_json::Value> = libs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "libraries": l, "backends": backends, "live": live })
            )?
        );
        return Ok(());
    }
    for (k, v) in &libs {
        println!("{k:<14} {v}");
    }
    for b in &backends {
        let state = if b.available {
            "available".to_string()
        } else {
            format!("unavailable: {}", b.error.as_deref().unwrap_or("?"))
        };
        println!(
            "{:<10} {state}; encoders: {}",
            b.backend.name(),
            b.encoders.join(", ")
        );
    }
    for k in &live {
        let state = match &k.why {
            None => "available".to_string(),
            Some(why) => format!("unavailable: {why}"),
        };
        println!("live {:<6} {:<12} {state}", k.direction, k.kind);
    }
    Ok(())
}

fn cmd_demo(outdir: &Path, profile_name: &str) -> Res {
    std::fs::create_dir_all(outdir)
        .map_err(|e| format!("{}: cannot create: {e}", outdir.display()))?;
    let clip = outdir.join("demo-source.mp4");
    eprintln!("making a 5 s test clip: {}", clip.display());
    pipeline::write_test_clip(&clip, 5, "10:00:00:00")?;
    cmd_transcode(
        &clip,
        profile_name,
        outdir,
        BackendChoice::Auto,
        None,
        false,
        true,
    )?;
    println!("source: {}", clip.display());
    Ok(())
}
