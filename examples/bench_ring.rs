//! Runs the ring benchmark (`daq_engine::ring_bench`) and prints its table, until the
//! `daq-engine bench ring` subcommand calls the same function.
//!
//! `cargo run --release --example bench_ring -- [--repeats N] [--sizes 64,4096,65536]
//! [--groups 1,2] [--rate HZ] [--realtime] [--no-peer] [--huge auto|off] [--json]`

use daq_engine::ring_bench::{run, RingBenchOptions};

fn list(v: &str) -> anyhow::Result<Vec<usize>> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| anyhow::anyhow!("{x:?}: {e}"))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let mut opts = RingBenchOptions::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--repeats" => opts.repeats = value()?.parse()?,
            "--sizes" => opts.sizes = list(&value()?)?,
            "--groups" => opts.groups = list(&value()?)?,
            "--rate" => opts.paced_rate_hz = value()?.parse()?,
            "--no-peer" => opts.no_peer = true,
            "--realtime" => opts.realtime = true,
            "--huge" => {
                opts.huge = match value()?.as_str() {
                    "auto" => daq_engine::shm::HugePages::Auto,
                    "off" => daq_engine::shm::HugePages::Off,
                    other => anyhow::bail!("--huge {other}: auto or off"),
                }
            }
            "--json" => json = true,
            other => anyhow::bail!(
                "unknown option {other}; see the comment at the top of examples/bench_ring.rs"
            ),
        }
    }
    let report = run(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
