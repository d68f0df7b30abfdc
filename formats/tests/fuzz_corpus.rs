//! Replays the fuzz inputs (the hand-written `fuzz/seeds/<target>/`, the
//! minimised `fuzz/corpus/<target>/`) and every crash fuzzing found
//! (`fuzz/regressions/<target>/`) through the same checks the fuzz targets
//! make, on stable and in the normal test run (docs/fuzzing.md).

use std::panic;
use std::path::{Path, PathBuf};

// The fuzz targets' own checks, so the replay makes exactly their calls.
#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Where the inputs are kept, by kind.
const KINDS: [&str; 3] = ["seeds", "corpus", "regressions"];

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the folder is missing.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.expect("a readable folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_seeds_and_no_folder_is_a_stray() {
    for kind in KINDS {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            assert_ne!(kind, "seeds", "fuzz/{kind} is missing");
            continue;
        };
        for entry in dir {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(
                checks::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} is not a fuzz target's folder"
            );
        }
    }
    for (target, _) in checks::TARGETS {
        assert!(
            !inputs("seeds", target).is_empty(),
            "fuzz/seeds/{target} is empty"
        );
    }
}

#[test]
fn the_seeds_corpus_and_regressions_replay_without_a_panic() {
    let mut failed = Vec::new();
    let mut count = 0;
    for (target, check) in checks::TARGETS {
        for kind in KINDS {
            for path in inputs(kind, target) {
                let data = std::fs::read(&path).expect("a readable input");
                count += 1;
                if panic::catch_unwind(|| check(&data)).is_err() {
                    failed.push(format!("{target}: {}", path.display()));
                }
            }
        }
    }
    assert!(count > 0, "no inputs found under {}", fuzz_dir().display());
    eprintln!("replayed {count} fuzz inputs");
    assert!(
        failed.is_empty(),
        "{} inputs panicked (the panic messages are above):\n{}",
        failed.len(),
        failed.join("\n")
    );
}
