//! The documentation matches the code (issue 23 item 6): every `samtykke …`
//! command line in the code blocks of `README.md` and `docs/*.md` parses
//! with the real command line (`samtykke::cli::Cli`), `docs/configuration.md`
//! names every command, and the metrics documented in `docs/operations.md`
//! are the metrics `/metrics` exports, with the same types, labels and label
//! values. Everything is read from the files at test time: a new command or
//! metric needs only its documentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use samtykke::cli::Cli;

use crate::helpers::{auth_url, browser, query_of, redeem, run_flow, TestApp};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `README.md` and every `docs/*.md`, as (name, text).
fn documents() -> Vec<(String, String)> {
    let root = repository();
    let mut paths = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            (
                name,
                std::fs::read_to_string(&p).expect("read the document"),
            )
        })
        .collect()
}

/// One shell command line of a code block: where it is, and its words.
#[derive(Debug)]
struct CommandLine {
    at: String,
    text: String,
    words: Vec<String>,
}

/// Every command line of the shell code blocks (```` ```sh ````, or no
/// language) of `text`: continuation lines joined, a `$ ` prompt removed
/// (in a block that has prompts, only the lines with one are commands),
/// split at `&&`, `||`, `;`, `|` and `&`.
fn command_lines(name: &str, text: &str) -> Vec<CommandLine> {
    let mut found = Vec::new();
    let mut block: Option<(String, Vec<(usize, String)>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match block.take() {
                Some((language, lines)) => {
                    if matches!(language.as_str(), "" | "sh" | "bash" | "shell" | "console") {
                        found.extend(commands_of_block(name, &lines));
                    }
                }
                None => block = Some((info.trim().to_owned(), Vec::new())),
            }
            continue;
        }
        if let Some((_, lines)) = block.as_mut() {
            lines.push((i + 1, line.to_owned()));
        }
    }
    found
}

fn commands_of_block(name: &str, lines: &[(usize, String)]) -> Vec<CommandLine> {
    let prompts = lines.iter().any(|(_, l)| l.trim_start().starts_with("$ "));
    let mut commands = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in lines {
        let (start, mut text) = match pending.take() {
            Some((start, before)) => (start, format!("{before} {}", line.trim())),
            None => {
                let trimmed = line.trim_start();
                match trimmed.strip_prefix("$ ") {
                    Some(command) => (*number, command.to_owned()),
                    None if prompts => continue,
                    None => (*number, trimmed.to_owned()),
                }
            }
        };
        if let Some(joined) = text.strip_suffix('\\') {
            text = joined.trim_end().to_owned();
            pending = Some((start, text));
            continue;
        }
        for words in split_commands(&shell_words(&text)) {
            commands.push(CommandLine {
                at: format!("{name}:{start}"),
                text: text.clone(),
                words,
            });
        }
    }
    commands
}

/// A shell word, or an operator that separates commands.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Operator,
}

/// The words of a shell line as `sh` splits them: quotes, backslashes,
/// comments (`#` at the start of a word) and the operators `;`, `&`, `|`
/// (doubled or not).
fn shell_words(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.extend(chars.next());
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            ';' | '&' | '|' => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                tokens.push(Token::Operator);
            }
            c if c.is_whitespace() => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        tokens.push(Token::Word(word));
    }
    tokens
}

fn split_commands(tokens: &[Token]) -> Vec<Vec<String>> {
    tokens
        .split(|t| *t == Token::Operator)
        .map(|command| {
            command
                .iter()
                .filter_map(|t| match t {
                    Token::Word(w) => Some(w.clone()),
                    Token::Operator => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

/// The arguments `samtykke` gets from a command, if it runs `samtykke`:
/// `samtykke …`, `target/release/samtykke …`, `cargo run [--release] … -- …`,
/// after any `NAME=value` environment assignments.
fn samtykke_arguments(words: &[String]) -> Option<Vec<String>> {
    let start = words
        .iter()
        .position(|w| !is_assignment(w))
        .unwrap_or(words.len());
    let words = &words[start..];
    let program = words.first()?;
    if program == "samtykke" || program.ends_with("/samtykke") {
        return Some(words[1..].to_vec());
    }
    if program == "cargo" && words.get(1).map(String::as_str) == Some("run") {
        let dashes = words.iter().position(|w| w == "--")?;
        return Some(words[dashes + 1..].to_vec());
    }
    None
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Parses `samtykke ARGS` as the binary does. A `…` word stands for
/// arguments left out; a line with one parses either as written (`…` as a
/// value) or without the `…` words.
fn parse(arguments: &[String]) -> Result<Cli, clap::Error> {
    let argv = |args: &[&String]| {
        std::iter::once("samtykke".to_owned())
            .chain(args.iter().map(|a| (*a).clone()))
            .collect::<Vec<_>>()
    };
    let all: Vec<&String> = arguments.iter().collect();
    let first = Cli::try_parse_from(argv(&all));
    if first.is_ok() || !arguments.iter().any(|a| a == "…") {
        return first;
    }
    let without: Vec<&String> = arguments.iter().filter(|a| *a != "…").collect();
    Cli::try_parse_from(argv(&without)).or(first)
}

#[test]
fn every_documented_samtykke_command_line_parses() {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for (name, text) in documents() {
        for line in command_lines(&name, &text) {
            let Some(arguments) = samtykke_arguments(&line.words) else {
                continue;
            };
            if let Err(e) = parse(&arguments) {
                let why = e.render().to_string();
                let why = why.lines().next().unwrap_or("").to_owned();
                failures.push(format!("{}: {}\n    {why}", line.at, line.text));
            }
            checked.push(line.at);
        }
    }
    assert!(
        failures.is_empty(),
        "documented command lines that do not parse:\n{}",
        failures.join("\n")
    );
    // The examples of README.md, operations.md, configuration.md,
    // regular-consent.md, … : a parser that found none would pass above.
    assert!(
        checked.len() >= 20,
        "only {} command lines found: {checked:?}",
        checked.len()
    );
    for document in ["README.md", "docs/operations.md", "docs/regular-consent.md"] {
        assert!(
            checked
                .iter()
                .any(|at| at.starts_with(&format!("{document}:"))),
            "no command line found in {document}"
        );
    }
}

#[test]
fn the_command_line_reader_handles_continuations_prompts_quotes_and_placeholders() {
    let text = "```sh\nSAMTYKKE_CONFIG=/etc/s.toml samtykke client list   # comment\n\
                samtykke client create --name \"Eksempel Bank ASA\" \\\n  --org 923609016 && echo ok\n\
                cargo run --release -- serve --sandbox\nsudo -u postgres createdb samtykke\n```\n\
                ```console\n$ samtykke keys list\nsamtykke: database sqlite://x.db\n```\n\
                ```toml\nsamtykke = 1\n```\n";
    let lines = command_lines("x.md", text);
    let runs: Vec<(String, Vec<String>)> = lines
        .iter()
        .filter_map(|l| Some((l.at.clone(), samtykke_arguments(&l.words)?)))
        .collect();
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("x.md:2", vec!["client", "list"]),
        (
            "x.md:3",
            vec![
                "client",
                "create",
                "--name",
                "Eksempel Bank ASA",
                "--org",
                "923609016",
            ],
        ),
        ("x.md:5", vec!["serve", "--sandbox"]),
        ("x.md:9", vec!["keys", "list"]),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(at, w)| (at.to_owned(), w.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(runs, expected);
    assert!(parse(&runs[1].1).is_ok());
    let wrong: Vec<String> = ["client", "create", "--nmae", "x"]
        .into_iter()
        .map(String::from)
        .collect();
    assert!(parse(&wrong).is_err(), "a misspelt flag is refused");
    let elided: Vec<String> = ["serve", "…", "--admin-listen", "off"]
        .into_iter()
        .map(String::from)
        .collect();
    assert!(parse(&elided).is_ok());
}

/// The first paragraph of `docs/configuration.md` names every command.
#[test]
fn the_configuration_page_names_every_command() {
    let text = std::fs::read_to_string(repository().join("docs/configuration.md")).unwrap();
    let intro: String = text
        .split("\n\n")
        .find(|p| p.contains("one binary"))
        .expect("the paragraph that lists the commands")
        .to_owned();
    for command in Cli::command().get_subcommands() {
        let name = command.get_name();
        if name == "help" {
            continue;
        }
        assert!(
            intro.contains(&format!("`samtykke {name}")),
            "docs/configuration.md does not name `samtykke {name}` in: {intro}"
        );
    }
}

/// A metric as documented: its type and its labels with the values listed
/// for them (empty: any value).
#[derive(Debug, Default)]
struct Documented {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// The metric tables of the `## Metrics` section of `docs/operations.md`.
fn documented_metrics() -> BTreeMap<String, Documented> {
    let text = std::fs::read_to_string(repository().join("docs/operations.md")).unwrap();
    let start = text.find("\n## Metrics").expect("## Metrics");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let mut metrics = BTreeMap::new();
    let mut header: Vec<String> = Vec::new();
    for line in section.lines() {
        let Some(row) = line.strip_prefix('|') else {
            header.clear();
            continue;
        };
        let cells: Vec<String> = row
            .trim_end()
            .trim_end_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        if header.is_empty() {
            header = cells;
            continue;
        }
        let Some(name) = cells
            .first()
            .and_then(|c| c.strip_prefix('`')?.strip_suffix('`'))
        else {
            continue;
        };
        let column = |title: &str| {
            header
                .iter()
                .position(|h| h == title)
                .and_then(|i| cells.get(i))
                .cloned()
        };
        let labels =
            column("Labels").unwrap_or_else(|| panic!("the table of {name} has no Labels column"));
        metrics.insert(
            name.to_owned(),
            Documented {
                kind: column("Type").expect("Type column"),
                labels: documented_labels(&labels),
            },
        );
    }
    metrics
}

/// `` `a` (`x`, `y`), `b` `` → {a: {x, y}, b: {}}; `–` or `—` → none.
fn documented_labels(cell: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut depth = 0;
    let mut rest = cell;
    while let Some(c) = rest.chars().next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '`' => {
                let end = rest[1..].find('`').expect("closing backtick") + 1;
                let code = rest[1..end].to_owned();
                if depth == 0 {
                    labels.entry(code.clone()).or_default();
                    current = Some(code);
                } else if let Some(label) = &current {
                    labels.entry(label.clone()).or_default().insert(code);
                }
                rest = &rest[end + 1..];
                continue;
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    labels
}

/// What `/metrics` exports: per metric family its type and, per label, the
/// values seen (a histogram's `le` left out).
fn exported_metrics(text: &str) -> BTreeMap<String, Documented> {
    let mut families: BTreeMap<String, Documented> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').expect("# TYPE name type");
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("a sample");
        let sample = &line[..name_end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
            .unwrap_or(sample);
        let labels = match line[name_end..].strip_prefix('{') {
            Some(rest) => sample_labels(rest),
            None => Vec::new(),
        };
        let entry = families
            .get_mut(family)
            .unwrap_or_else(|| panic!("a sample of an undeclared family: {line}"));
        for (label, value) in labels {
            if label != "le" {
                entry.labels.entry(label).or_default().insert(value);
            }
        }
    }
    families
}

/// `a="x",b="y\"z"} 1` → [(a, x), (b, y"z)].
fn sample_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').to_owned();
        if name.is_empty() || name.starts_with('}') {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted label value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => value.extend(chars.next()),
                c => value.push(c),
            }
        }
        labels.push((name, value));
        let mut peek = chars.clone();
        if peek.next() == Some('}') {
            return labels;
        }
    }
}

#[test]
fn the_metric_table_reader_reads_labels_and_their_values() {
    let labels = documented_labels(
        "`grant_type` (`client_credentials`, `authorization_code`), `audience` (`debt`), `route`",
    );
    assert_eq!(
        labels.get("grant_type").map(|v| v.len()),
        Some(2),
        "{labels:?}"
    );
    assert!(labels["route"].is_empty());
    assert!(documented_labels("—").is_empty());
    assert_eq!(
        sample_labels(r#"method="GET",route="/v1/debt/{id}",status="200"} 1"#),
        vec![
            ("method".to_owned(), "GET".to_owned()),
            ("route".to_owned(), "/v1/debt/{id}".to_owned()),
            ("status".to_owned(), "200".to_owned()),
        ]
    );
}

/// Some of everything the metrics count: pages, a consent-flow token, a
/// debt fetch, an agreement, a revocation by the client, a refused request.
async fn traffic(app: &TestApp) {
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/no/such"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let redirect = run_flow(
        app,
        &browser(),
        &auth_url(app, &[]),
        "14842249091",
        "accept",
    )
    .await;
    let code = query_of(&redirect)["code"].clone();
    let tokens: serde_json::Value = redeem(app, &code, &[]).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().expect("access_token");
    assert_eq!(app.get_bearer("/v1/debt", access).await.status(), 200);
    let agreement = app
        .agreement_consent("14842249091", "debt.unsecured.processing", 30)
        .await;
    let debt = app
        .sandbox_token("/v1/debt", "debt.unsecured.processing")
        .await;
    assert_eq!(
        app.get_bearer(&format!("/v1/debt/{agreement}"), &debt)
            .await
            .status(),
        200
    );
    let deleted = app
        .http
        .delete(app.url(&format!("/v1/debt/{agreement}")))
        .bearer_auth(&debt)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
}

engine_tests! {
    async fn every_documented_metric_is_exported_and_every_exported_one_documented(app) {
        traffic(&app).await;
        let scraped = app.http.get(app.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        let exported = exported_metrics(&scraped);
        let documented = documented_metrics();
        assert!(documented.len() >= 10, "the tables were not found: {documented:?}");
        let mut problems = Vec::new();
        for (name, doc) in &documented {
            let Some(out) = exported.get(name) else {
                problems.push(format!("{name} is documented but not exported"));
                continue;
            };
            if out.kind != doc.kind {
                problems.push(format!("{name} is a {} but documented as a {}", out.kind, doc.kind));
            }
            let names = |m: &BTreeMap<String, BTreeSet<String>>| m.keys().cloned().collect::<Vec<_>>();
            if names(&out.labels) != names(&doc.labels) {
                problems.push(format!("{name} has the labels {:?} but documented {:?}", names(&out.labels), names(&doc.labels)));
            }
            for (label, values) in &out.labels {
                let listed = doc.labels.get(label).cloned().unwrap_or_default();
                if listed.is_empty() {
                    continue;
                }
                for value in values.difference(&listed) {
                    problems.push(format!("{name}: {label}=\"{value}\" is exported but not among the documented values {listed:?}"));
                }
            }
        }
        for name in exported.keys().filter(|n| !documented.contains_key(*n)) {
            problems.push(format!("{name} is exported but not documented in docs/operations.md"));
        }
        assert!(problems.is_empty(), "docs/operations.md and /metrics disagree:\n{}\n\n{scraped}", problems.join("\n"));
    }
}
