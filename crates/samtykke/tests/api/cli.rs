//! The operator CLI against a real database.

use crate::helpers::run_cli;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

engine_db_tests! {
    async fn client_create_json_prints_only_the_id_and_the_secret(url) {
        let out = run_cli(&url, &["client", "create", "--json", "--name", "Eksempelbank", "--org", "974760673",
            "--redirect-uri", "https://bank.example/cb", "--purpose", "presentation", "--purpose", "processing", "--agreement", "--events"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["client_id", "client_secret"]);
        let id = created["client_id"].as_str().unwrap();

        let show = run_cli(&url, &["client", "show", id, "--json"]);
        let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(shown["name"], "Eksempelbank");
        assert_eq!(shown["org"], "974760673");
        assert_eq!(shown["redirect_uris"], serde_json::json!(["https://bank.example/cb"]));
        assert_eq!(shown["purposes"], serde_json::json!(["presentation", "processing"]));
        assert_eq!(shown["agreement"], true);
        assert_eq!(shown["events"], true);
        assert_eq!(shown["disabled"], false);
        assert!(!String::from_utf8_lossy(&show.stdout).contains(created["client_secret"].as_str().unwrap()));

        let list = run_cli(&url, &["client", "list", "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let text = String::from_utf8(run_cli(&url, &["client", "list"]).stdout).unwrap();
        assert!(text.contains(id) && text.contains("Eksempelbank"));
    }

    async fn client_create_refuses_bad_input_with_a_clear_message(url) {
        for (args, message) in [
            (vec!["--name", "Bank", "--org", "974760674"], "check digit"),
            (vec!["--name", "Bank", "--org", "12345"], "9 digits"),
            (vec!["--name", "", "--org", "974760673"], "client name"),
            (vec!["--name", "Bank", "--org", "974760673", "--redirect-uri", "javascript:alert(1)"], "https"),
            (vec!["--name", "Bank", "--org", "974760673", "--redirect-uri", "https://bank.example/cb#x"], "fragment"),
            (vec!["--name", "Bank", "--org", "974760673", "--purpose", "marketing"], "marketing"),
        ] {
            let out = run_cli(&url, &[&["client", "create"], args.as_slice()].concat());
            assert!(!out.status.success(), "{args:?} was accepted");
            assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        }
        let listed: serde_json::Value = serde_json::from_slice(&run_cli(&url, &["client", "list", "--json"]).stdout).unwrap();
        assert_eq!(listed, serde_json::json!([]), "nothing was created");
    }

    async fn operator_commands_name_the_database_they_used(url) {
        let out = run_cli(&url, &["client", "list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        let shown = samtykke::storage::redact_database_url(&url);
        assert!(err.contains(&format!("samtykke: database {shown}")), "{err}");
        if let Some(path) = url.strip_prefix("sqlite://") {
            assert!(err.contains(&format!("({path})")), "the file's absolute path: {err}");
        }
        // Standard output stays the JSON alone.
        let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    }

    async fn client_create_warns_when_the_client_can_get_no_token(url) {
        let out = run_cli(&url, &["client", "create", "--json", "--name", "Nothing", "--org", "974760673"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("is granted nothing it could get a token for"), "{}", stderr(&out));
        let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is still the JSON alone");
        for grant in [&["--purpose", "presentation"][..], &["--agreement"][..], &["--events"][..]] {
            let out = run_cli(&url, &[&["client", "create", "--json", "--name", "Something", "--org", "974760673"][..], grant].concat());
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(!stderr(&out).contains("granted nothing"), "{grant:?}: {}", stderr(&out));
        }
    }

    async fn commands_on_an_unknown_client_fail_clearly(url) {
        for command in ["show", "rotate-secret", "disable", "enable", "delete"] {
            let out = run_cli(&url, &["client", command, "no-such-client"]);
            assert!(!out.status.success(), "{command}");
            assert!(stderr(&out).contains("no client with id no-such-client"), "{command}: {}", stderr(&out));
        }
    }
}

#[test]
fn an_unsupported_database_url_is_refused() {
    let out = run_cli("mysql://localhost/x", &["client", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unsupported database URL"));
}

#[test]
fn a_database_url_that_does_not_parse_is_echoed_with_a_suggestion() {
    // A file name without the scheme: echoed, with `sqlite:` in front.
    let out = run_cli("samtykke.db", &["client", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unsupported database URL samtykke.db"),
        "{err}"
    );
    assert!(err.contains("for example sqlite:samtykke.db"), "{err}");
    // Something else: echoed (its password hidden), and the default suggested.
    let out = run_cli("postgres//app:hunter2@db.example/x", &["client", "list"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("postgres//app:***@db.example/x"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(
        err.contains("sqlite:samtykke.db") && err.contains("postgres://"),
        "{err}"
    );
}

#[test]
fn a_postgresql_that_refuses_connections_says_so_at_once() {
    // Nothing listens on port 1: the refusal is reported by name, not as a
    // pool timeout after 5 s.
    let started = std::time::Instant::now();
    let out = run_cli(
        "postgres://postgres@127.0.0.1:1/samtykke",
        &["client", "list"],
    );
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("connection refused by 127.0.0.1:1"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "took {took:?}: {err}"
    );
}

#[test]
fn a_missing_sqlite_directory_is_named() {
    let dir = std::env::temp_dir().join(format!(
        "samtykke-no-such-dir-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}/samtykke.db", dir.display());
    for args in [&["client", "list"][..], &["keys", "list", "--create"][..]] {
        let out = run_cli(&url, args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "the directory {} for the SQLite database",
                dir.display()
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("does not exist"), "{err}");
    }
    assert!(!dir.exists(), "nothing was created");
}

#[test]
fn a_database_password_never_appears_in_an_error() {
    let out = run_cli(
        "postgres://user:hunter2@127.0.0.1:1/nothing",
        &["client", "list"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("***"), "{err}");
}

/// A directory of its own in the temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "samtykke-test-dir-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn operator_commands_refuse_to_create_a_new_sqlite_file_without_create() {
    let dir = TempDir::new();
    let file = dir.0.join("samtykke.db");
    let url = format!("sqlite://{}", file.display());
    let delivery = dir.0.join("delivery.json");
    std::fs::write(&delivery, "{}").unwrap();
    for args in [
        &["client", "list"][..],
        &[
            "client",
            "create",
            "--name",
            "Bank",
            "--org",
            "974760673",
            "--purpose",
            "presentation",
        ][..],
        &["keys", "list"][..],
        &["debt", "import", delivery.to_str().unwrap()][..],
    ] {
        let out = run_cli(&url, args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("no SQLite database at {}", file.display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("--create"), "{args:?}: {err}");
        assert!(!file.exists(), "{args:?} created the file");
    }
    // With --create the file is made, and later commands use it.
    let out = run_cli(&url, &["client", "list", "--create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(file.exists());
    let out = run_cli(&url, &["client", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_default_database_in_the_wrong_directory_is_not_created() {
    // As an operator would: no --database-url, run where no database is.
    let dir = TempDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
        .args(["client", "list"])
        .current_dir(&dir.0)
        .env_remove("SAMTYKKE_DATABASE_URL")
        .env_remove("SAMTYKKE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let expected = std::fs::canonicalize(&dir.0).unwrap().join("samtykke.db");
    assert!(
        err.contains(&format!("no SQLite database at {}", expected.display()))
            || err.contains(&format!(
                "no SQLite database at {}",
                dir.0.join("samtykke.db").display()
            )),
        "{err}"
    );
    assert!(
        err.contains("(sqlite://samtykke.db)") && err.contains("--create"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&dir.0).unwrap().next().is_none(),
        "nothing was created"
    );
}
