//! The layering of `src/` holds (docs/architecture.md): the `mpi` crate is used only under
//! `src/comm/`, `hdf5` only under `src/io/`, `cli` is imported only by `main` and the job entry
//! points (`cmd`), and the top-level modules import each other only downwards, without circles.
//! Read from the source text (comments and `#[cfg(test)]` modules left out), so a change that
//! breaks a rule fails `make test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, top to bottom. A module may import only modules at its rank or below
/// (never above), and never in a circle.
const LAYERS: &[(&str, u32)] = &[
    ("main", 0),
    ("cmd", 1),
    ("cli", 2),
    ("train", 3),
    ("admm", 3),
    ("report", 3),
    ("error", 4),
    ("config", 5),
    ("io", 5),
    ("sim", 5),
    ("coding", 6),
    ("model", 6),
    ("linalg", 7),
    ("comm", 8),
    ("faults", 9),
    ("straggler", 9),
    ("optim", 9),
    ("compress", 9),
    ("data", 9),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without `#[cfg(test)] mod … { … }` blocks.
fn code_of(text: &str) -> String {
    let mut s: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    while let Some(start) = s.find("#[cfg(test)]") {
        let rest = &s[start..];
        let Some(open) = rest.find('{') else { break };
        // Only a module (a `mod x;` declaration has no block and is left alone).
        let head = &rest[..open];
        if !head.contains("mod ") || head.contains(';') {
            s.replace_range(start..start + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0;
        let mut end = start + open;
        for (i, c) in s[start + open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        s.replace_range(start..=end, "");
    }
    s
}

/// Whether `code` uses the external crate `name` (`name::…` or `use name`), not a path that
/// merely ends in it (`comm::mpi::World`).
fn uses_crate(code: &str, name: &str) -> bool {
    let pat = format!("{name}::");
    code.match_indices(&pat).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        !matches!(before, Some(c) if c == ':' || c == '_' || c.is_alphanumeric())
    }) || code.contains(&format!("use {name};"))
}

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn mpi_hdf5_and_cli_stay_in_their_layers_and_imports_go_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let m = module_of(&src, f);
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        if uses_crate(&code, "mpi") && m != "comm" {
            problems.push(format!("{rel} uses the mpi crate (only src/comm/ may)"));
        }
        if uses_crate(&code, "hdf5") && m != "io" {
            problems.push(format!("{rel} uses hdf5 (only src/io/ may)"));
        }
        if m == "lib" {
            continue;
        }
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != m && rank.contains_key(name.as_str()) {
                edges.entry(m.clone()).or_default().insert(name);
            }
        }
        if m == "main" && code.contains("gradcode::cli") {
            edges.entry(m.clone()).or_default().insert("cli".into());
        }
    }
    for (from, tos) in &edges {
        let Some(&rf) = rank.get(from.as_str()) else {
            problems.push(format!("module {from} is missing from the layer table"));
            continue;
        };
        for to in tos {
            if to == "cli" && !matches!(from.as_str(), "main" | "cmd") {
                problems.push(format!("{from} imports cli (only main and cmd may)"));
            }
            if rank[to.as_str()] < rf {
                problems.push(format!(
                    "{from} (layer {rf}) imports {to} (layer {}), upwards",
                    rank[to.as_str()]
                ));
            }
        }
    }
    // No circles: no module reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == start {
                problems.push(format!("an import circle runs through {start}"));
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n  {}",
        problems.join("\n  ")
    );
    // The rules have something to hold: the layers that must talk to MPI and HDF5 do.
    assert!(edges
        .get("cmd")
        .is_some_and(|e| e.contains("comm") && e.contains("train")));
    assert!(edges.get("train").is_some_and(|e| e.contains("comm")));
}

#[test]
fn the_scanner_sees_what_it_must() {
    assert!(uses_crate("use mpi::traits::*;", "mpi"));
    assert!(uses_crate("let (a, b) = hdf5::library_version();", "hdf5"));
    assert!(!uses_crate("use crate::comm::mpi::World;", "mpi"));
    assert!(!uses_crate("fn x() { my_mpi::f() }", "mpi"));
    let code = code_of("use crate::a; // crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n");
    assert!(code.contains("crate::a") && !code.contains("crate::b") && !code.contains("crate::c"));
    let decl = code_of("#[cfg(test)]\nmod tests;\nuse crate::d;\n");
    assert!(decl.contains("crate::d"));
}
