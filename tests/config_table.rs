//! The README's configuration table and the code agree both ways: every environment variable
//! named in the crates' sources (a string literal in SCREAMING_CASE with a known prefix) has a
//! row, and every row names a variable something still reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

const PREFIXES: [&str; 12] = [
    "JILO_",
    "STRIPE_",
    "FAL_",
    "SUCHUANG_",
    "APIFY_",
    "GEMINI_",
    "YOUTUBE_",
    "GOOGLE_",
    "AWS_",
    "SMTP_",
    "DATABASE_",
    "MEDIA_",
];

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// `"NAME"` literals that look like environment variables.
fn names(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 4
                && PREFIXES.iter().any(|p| s.starts_with(p))
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !s.ends_with('_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_variable_the_code_reads_is_in_the_readme_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for dir in [
        "src",
        "jilo-core/src",
        "jilo-providers/src",
        "jilo-store/src",
        "jilo-sim/src",
        "examples/server/src",
    ] {
        sources(&root.join(dir), &mut texts);
    }
    let read: BTreeSet<String> = texts.iter().flat_map(|t| names(t)).collect();
    assert!(
        read.contains("FAL_KEY") && read.contains("DATABASE_URL"),
        "{read:?}"
    );

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has a Configuration section");
    let rows: BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<&String> = read.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in the README's table: {missing:?}"
    );
}
