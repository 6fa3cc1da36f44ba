//! The fuzz targets' checks (`fuzz/checks.rs`) as an ordinary test: every input of the
//! checked-in seed corpus (`fuzz/seeds/<target>/`), of a local cargo-fuzz corpus and its crash
//! artifacts when present (`fuzz/corpus/<target>/`, `fuzz/artifacts/<target>/`), and a bounded,
//! deterministic set of mutations of each: every truncation, every single-bit flip, and a
//! fixed number of seeded multi-byte mutations. Bounded by input count, never by time, so it
//! runs in CI on stable Rust where cargo-fuzz (nightly) does not.

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

/// Seeded mutations per input, on top of the truncations and bit flips.
const RANDOM_MUTATIONS: usize = 20_000;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs `check` on `data` and on its mutations.
fn replay(data: &[u8], seed: u64, check: fn(&[u8])) {
    check(data);
    for len in 0..data.len() {
        check(&data[..len]);
    }
    let mut m = data.to_vec();
    for i in 0..m.len() * 8 {
        m[i / 8] ^= 1 << (i % 8);
        check(&m);
        m[i / 8] ^= 1 << (i % 8);
    }
    if data.is_empty() {
        return;
    }
    let mut x = seed | 1;
    for _ in 0..RANDOM_MUTATIONS {
        let mut m = data.to_vec();
        for _ in 0..1 + xorshift(&mut x) % 4 {
            let at = (xorshift(&mut x) % m.len() as u64) as usize;
            match xorshift(&mut x) % 3 {
                0 => m[at] = xorshift(&mut x) as u8,
                // Length fields are where decoders overflow: try their extremes.
                1 => m[at] = [0x00, 0xff, 0x7f, 0x80][(xorshift(&mut x) % 4) as usize],
                _ => {
                    let end = (at + 1 + (xorshift(&mut x) % 16) as usize).min(m.len());
                    m.drain(at..end);
                    if m.is_empty() {
                        break;
                    }
                }
            }
        }
        check(&m);
    }
}

#[test]
fn decode_file_corpus_replays() {
    let inputs = inputs("decode_file");
    assert!(
        inputs.len() >= 3,
        "the seed corpus (fuzz/seeds/decode_file) is missing"
    );
    for (i, (path, data)) in inputs.iter().enumerate() {
        eprintln!("{}", path.display());
        replay(
            data,
            0x9e37_79b9_7f4a_7c15 ^ i as u64,
            checks::decode_file_input,
        );
    }
}

#[test]
fn parse_key_corpus_replays() {
    let inputs = inputs("parse_key");
    assert!(
        inputs.len() >= 3,
        "the seed corpus (fuzz/seeds/parse_key) is missing"
    );
    let mut accepted = 0;
    for (i, (path, data)) in inputs.iter().enumerate() {
        eprintln!("{}", path.display());
        accepted += usize::from(
            std::str::from_utf8(data)
                .ok()
                .and_then(replica_formats::ObjectKey::parse)
                .is_some(),
        );
        replay(
            data,
            0x2545_f491_4f6c_dd1d ^ i as u64,
            checks::parse_key_input,
        );
    }
    // The seeds hold canonical keys as well as near misses.
    assert!(accepted >= 3 && accepted < inputs.len());
}
