//! Measures time and peak memory of one repository operation per process.
//!
//! ```sh
//! cargo run --release -p berth-repo --example measure -- gen DIR MIB
//! cargo run --release -p berth-repo --example measure -- init REPO LEVEL VERIFY [PACK_MIB]
//! cargo run --release -p berth-repo --example measure -- snapshot REPO DIR
//! cargo run --release -p berth-repo --example measure -- restore REPO ID TARGET
//! cargo run --release -p berth-repo --example measure -- rustic-restore REPO ID TARGET
//! cargo run --release -p berth-repo --example measure -- check REPO
//! cargo run --release -p berth-repo --example measure -- prune REPO
//! ```
//!
//! `init` creates a repository with a chosen zstd level and extra-verify
//! setting (berth itself always uses level 1, verify on); `rustic-restore`
//! runs `rustic_core`'s own restore for comparison. Each prints the elapsed
//! time and the peak resident memory (VmHWM) of the operation, after opening. The password is
//! `measure`.

use std::{io::Write, path::Path, time::Instant};

use berth_repo::{Progress, Repo, SnapshotKind, SnapshotMeta};
use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, LocalDestination, LsOptions, Repository, RepositoryBackends,
    RepositoryOptions, RestoreOptions,
};

const PASSWORD: &str = "measure";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["gen", dir, mib] => generate(Path::new(dir), mib.parse().expect("MIB")),
        ["init", repo, level, verify] => init(repo, level.parse().unwrap(), verify.parse().unwrap(), None),
        ["init", repo, level, verify, pack_mib] => {
            init(repo, level.parse().unwrap(), verify.parse().unwrap(), Some(pack_mib.parse().unwrap()))
        }
        ["snapshot", repo, dir] => {
            let repo = Repo::open(repo, PASSWORD, Progress::Hidden).unwrap();
            reset_peak_rss();
            let info = repo.snapshot(Path::new(dir), &SnapshotMeta::new("measure-0", SnapshotKind::Manual)).unwrap();
            println!("{}", info.id);
            eprintln!(
                "files {} bytes {} added {} packed {}",
                info.files, info.bytes, info.data_added, info.data_added_packed
            );
        }
        ["restore", repo, id, target] => {
            let repo = Repo::open(repo, PASSWORD, Progress::Hidden).unwrap();
            reset_peak_rss();
            let stats = repo.restore(id, Path::new(target)).unwrap();
            eprintln!("files {} bytes {}", stats.files, stats.bytes);
        }
        ["rustic-restore", repo, id, target] => rustic_restore(repo, id, target),
        ["check", repo] => {
            let repo = Repo::open(repo, PASSWORD, Progress::Hidden).unwrap();
            println!("{:#?}", repo.check(true).unwrap());
            println!("{:#?}", repo.list().unwrap());
        }
        ["prune", repo] => {
            let repo = Repo::open(repo, PASSWORD, Progress::Hidden).unwrap();
            println!("{:#?}", repo.prune(false).unwrap());
        }
        _ => {
            eprintln!("usage: see the file's documentation");
            std::process::exit(2);
        }
    }
    eprintln!("elapsed {:.2} s, peak RSS {}", started.elapsed().as_secs_f64(), peak_rss());
}

/// Files of 1 to 64 MiB of incompressible data, `mib` MiB in all.
fn generate(dir: &Path, mib: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let mut left = mib;
    let mut buf = vec![0u8; 1 << 20];
    for n in 0.. {
        if left == 0 {
            break;
        }
        let size = rng.usize(1..=64).min(left);
        let mut file = std::fs::File::create(dir.join(format!("file{n:04}"))).unwrap();
        for _ in 0..size {
            rng.fill(&mut buf);
            file.write_all(&buf).unwrap();
        }
        left -= size;
    }
}

fn backends(repo: &str) -> RepositoryBackends {
    let be = rustic_backend::LocalBackend::new(repo, std::iter::empty()).unwrap();
    RepositoryBackends::new(std::sync::Arc::new(be), None)
}

fn init(repo: &str, level: i32, verify: bool, pack_mib: Option<u64>) {
    let backends = backends(repo);
    let mut config = ConfigOptions::default().set_compression(level).set_extra_verify(verify);
    if let Some(mib) = pack_mib {
        config = config
            .set_datapack_size(bytesize::ByteSize::mib(mib))
            .set_datapack_size_limit(bytesize::ByteSize::mib(mib));
    }
    Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .unwrap()
        .init(&Credentials::password(PASSWORD), &KeyOptions::default(), &config)
        .unwrap();
}

fn rustic_restore(repo: &str, id: &str, target: &str) {
    let backends = backends(repo);
    let repo = Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .unwrap()
        .open(&Credentials::password(PASSWORD))
        .unwrap();
    reset_peak_rss();
    let repo = repo.to_indexed().unwrap();
    let node = repo.node_from_snapshot_path(&format!("{id}:/volume"), |_| true).unwrap();
    let dest = LocalDestination::new(target, true, false).unwrap();
    let opts = RestoreOptions::default();
    let ls = LsOptions::default();
    let plan = repo.prepare_restore(&opts, repo.ls(&node, &ls).unwrap(), &dest, false).unwrap();
    repo.restore(plan, &opts, repo.ls(&node, &ls).unwrap(), &dest).unwrap();
}

/// Opening derives the key with scrypt, which alone peaks at ~130 MiB;
/// forget that peak so the operation's own is measured.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        .unwrap_or_default()
}
