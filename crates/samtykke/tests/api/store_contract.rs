//! The storage contract, run on every engine through the one trait.

use std::sync::Arc;

use samtykke::storage::open_store;
use samtykke_core::domain::{
    ApiAudience, Client, ClientId, ClientName, ClientSecret, OrgNumber, Purpose, RedirectUri,
    ScopeSet,
};
use samtykke_core::keys::SigningKey;
use samtykke_core::store::{Store, StoreError};
use samtykke_core::token::{AccessToken, AccessTokenRecord};
use time::OffsetDateTime;

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

fn client(name: &str) -> (Client, ClientSecret) {
    let secret = ClientSecret::generate();
    let client = Client {
        id: ClientId::generate(),
        secret_hash: secret.hash(),
        name: ClientName::parse(name).unwrap(),
        org_number: OrgNumber::parse("974760673").unwrap(),
        redirect_uris: vec![
            RedirectUri::parse("https://bank.example/cb").unwrap(),
            RedirectUri::parse("http://127.0.0.1:9000/cb?x=1").unwrap(),
        ],
        purposes: vec![Purpose::Presentation, Purpose::Processing],
        may_create_agreements: true,
        may_read_events: false,
        require_pkce: false,
        disabled: false,
        created_at: at(0),
        token_generation: 0,
        request_objects: Default::default(),
    };
    (client, secret)
}

fn token_for(client: &Client) -> (AccessToken, AccessTokenRecord) {
    let token = AccessToken::generate();
    let record = AccessTokenRecord {
        hash: token.hash(),
        client_id: client.id.clone(),
        audience: ApiAudience::Debt,
        scopes: ScopeSet::parse("debt.unsecured.processing debt.unsecured.presentation").unwrap(),
        issued_at: at(1),
        expires_at: at(3601),
        revoked: false,
        consent_id: None,
    };
    (token, record)
}

async fn store(url: &str) -> Arc<dyn Store> {
    open_store(url).await.expect("open store")
}

engine_db_tests! {
    async fn clients_round_trip_and_updates_report_missing_clients(url) {
        let store = store(&url).await;
        let (c, secret) = client("Eksempelbank");
        store.insert_client(&c).await.unwrap();
        assert_eq!(store.find_client(&c.id).await.unwrap().unwrap(), c);
        assert!(matches!(store.insert_client(&c).await, Err(StoreError::Conflict(_))));

        let new_secret = ClientSecret::generate();
        store.replace_client_secret(&c.id, &new_secret.hash()).await.unwrap();
        let stored = store.find_client(&c.id).await.unwrap().unwrap();
        assert!(stored.secret_hash.verify(&new_secret) && !stored.secret_hash.verify(&secret));
        store.set_client_disabled(&c.id, true).await.unwrap();
        assert!(store.find_client(&c.id).await.unwrap().unwrap().disabled);

        let ghost = ClientId::parse("ghost").unwrap();
        assert!(store.find_client(&ghost).await.unwrap().is_none());
        assert!(matches!(store.replace_client_secret(&ghost, &new_secret.hash()).await, Err(StoreError::NotFound)));
        assert!(matches!(store.set_client_disabled(&ghost, true).await, Err(StoreError::NotFound)));
        assert!(matches!(store.delete_client(&ghost).await, Err(StoreError::NotFound)));

        let (d, _) = client("Second");
        store.insert_client(&d).await.unwrap();
        assert_eq!(store.list_clients().await.unwrap().len(), 2);
        store.delete_client(&c.id).await.unwrap();
        assert_eq!(store.list_clients().await.unwrap(), vec![d]);
    }

    async fn tokens_are_found_by_hash_revoked_and_deleted_with_their_client(url) {
        let store = store(&url).await;
        let (c, _) = client("Bank");
        store.insert_client(&c).await.unwrap();
        let (token, record) = token_for(&c);
        store.insert_access_token(&record).await.unwrap();
        assert_eq!(store.find_access_token(&token.hash()).await.unwrap().unwrap(), record);
        assert!(store.find_access_token(&AccessToken::generate().hash()).await.unwrap().is_none());
        store.revoke_access_token(&record).await.unwrap();
        assert!(store.find_access_token(&token.hash()).await.unwrap().unwrap().revoked);
        store.revoke_access_token(&record).await.unwrap();
        assert!(store.find_access_token(&token.hash()).await.unwrap().unwrap().revoked, "revoking twice is fine");
        store.delete_client(&c.id).await.unwrap();
        assert!(store.find_access_token(&token.hash()).await.unwrap().is_none());
    }

    async fn sealed_tokens_count_until_revoked_or_their_client_is_disabled_or_deleted(url) {
        let store = store(&url).await;
        let (c, _) = client("Bank");
        store.insert_client(&c).await.unwrap();
        let sealed = || token_for(&c).1;
        let (before, other) = (sealed(), sealed());
        assert_eq!(c.token_generation, 0);
        assert!(!store.sealed_token_revoked(&before, 0).await.unwrap());
        assert!(store.find_access_token(&before.hash).await.unwrap().is_none(), "a sealed token is not stored");

        // Revoking one records it and leaves the client's other tokens alone.
        store.revoke_access_token(&before).await.unwrap();
        assert!(store.sealed_token_revoked(&before, 0).await.unwrap());
        assert!(!store.sealed_token_revoked(&other, 0).await.unwrap());

        // Disabling the client ends every token issued until then, for good.
        store.set_client_disabled(&c.id, true).await.unwrap();
        assert!(store.sealed_token_revoked(&other, 0).await.unwrap());
        store.set_client_disabled(&c.id, false).await.unwrap();
        assert!(store.sealed_token_revoked(&other, 0).await.unwrap(), "re-enabling does not revive old tokens");
        let generation = store.find_client(&c.id).await.unwrap().unwrap().token_generation;
        assert_eq!(generation, 1);
        let after = sealed();
        assert!(!store.sealed_token_revoked(&after, 1).await.unwrap(), "tokens issued after re-enabling count");
        store.set_client_disabled(&c.id, false).await.unwrap();
        assert!(!store.sealed_token_revoked(&after, 1).await.unwrap(), "enabling an enabled client changes nothing");

        // A deleted client's tokens are gone with it.
        store.delete_client(&c.id).await.unwrap();
        assert!(store.sealed_token_revoked(&after, 1).await.unwrap());
    }

    async fn server_secrets_are_created_once_and_listed_by_literal_prefix(url) {
        let store = store(&url).await;
        assert_eq!(store.server_secret("access_token_key.1", b"first").await.unwrap(), b"first");
        assert_eq!(store.server_secret("access_token_key.1", b"second").await.unwrap(), b"first", "created once");
        store.server_secret("access_token_key", b"legacy").await.unwrap();
        store.server_secret("access_token_keyring", b"no dot").await.unwrap();
        // `_` and `%` are plain characters, not patterns.
        store.server_secret("accessXtokenXkey.2", b"pattern").await.unwrap();
        store.server_secret("csrf_key", b"csrf").await.unwrap();
        let mut listed = store.server_secrets_with_prefix("access_token_key").await.unwrap();
        listed.sort();
        let expected: Vec<(String, Vec<u8>)> = [("access_token_key", "legacy"), ("access_token_key.1", "first"), ("access_token_keyring", "no dot")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(store.server_secrets_with_prefix("access_token_key.").await.unwrap().len(), 1);
        assert!(store.server_secrets_with_prefix("%").await.unwrap().is_empty());
    }

    async fn only_one_first_signing_key_wins_a_race_and_rotation_lists_newest_first(url) {
        let store = store(&url).await;
        let keys: Vec<SigningKey> = (0..3).map(|i| SigningKey {
            kid: format!("k{i}"),
            private_key_pem: format!("pem{i}"),
            created_at: at(i),
        }).collect();
        let racers: Vec<_> = keys.iter().cloned().map(|k| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_first_signing_key(&k).await.unwrap() })
        }).collect();
        let mut wins = 0;
        for r in racers {
            if r.await.unwrap() { wins += 1; }
        }
        assert_eq!(wins, 1);
        let listed = store.list_signing_keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        let rotated = SigningKey { kid: "rotated".into(), private_key_pem: "pem".into(), created_at: at(0) };
        store.insert_signing_key(&rotated).await.unwrap();
        let listed = store.list_signing_keys().await.unwrap();
        assert_eq!(listed[0], rotated, "the newest insert is first even with an older timestamp");
        assert!(!store.insert_first_signing_key(&keys[0]).await.unwrap(), "keys exist: no second first key");
    }

    async fn the_sandbox_client_is_created_once_even_in_a_race(url) {
        let store = store(&url).await;
        assert!(store.sandbox_credentials().await.unwrap().is_none());
        let racers: Vec<_> = (0..4).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let (c, secret) = client(&format!("Sandbox {i}"));
                store.bootstrap_sandbox_client(&c, &secret).await.unwrap()
            })
        }).collect();
        let mut seen = Vec::new();
        for r in racers {
            seen.push(r.await.unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "every racer sees the same credentials");
        assert_eq!(store.list_clients().await.unwrap().len(), 1, "losers left no client behind");
        let creds = store.sandbox_credentials().await.unwrap().unwrap();
        let stored = store.find_client(&creds.client_id).await.unwrap().unwrap();
        assert!(stored.secret_hash.verify(&creds.client_secret));
        let rotated = ClientSecret::generate();
        store.update_sandbox_secret(&rotated).await.unwrap();
        assert_eq!(store.sandbox_credentials().await.unwrap().unwrap().client_secret, rotated);
    }
}

// --- the individual's portal ------------------------------------------------

mod portal {
    use samtykke_core::consent::{
        Consent, ConsentEventType, ConsentId, ConsentKind, ConsentScope, ConsentStatus, RevokedBy,
    };
    use samtykke_core::creditor_lookup::{CreditorFailure, CreditorUsage, Served};
    use samtykke_core::debt_lookup::{DebtLookup, DebtLookupOutcome};
    use samtykke_core::domain::{Nin, NinPolicy};
    use samtykke_core::store::RevokeOutcome;

    use super::*;

    fn nin(s: &str) -> Nin {
        Nin::parse(s, NinPolicy::AllowSynthetic).unwrap()
    }

    fn consent(client: &Client, person: &Nin, kind: ConsentKind, given: i64) -> Consent {
        let scope = ConsentScope::parse("debt.unsecured.presentation.100").unwrap();
        let ccid = (kind == ConsentKind::Agreement).then(|| uuid::Uuid::new_v4().to_string());
        Consent::new(
            client.id.clone(),
            person.clone(),
            scope,
            kind,
            ccid,
            at(given),
        )
    }

    async fn archived(store: &Arc<dyn Store>, client: &Client, id: &ConsentId) -> usize {
        store
            .consent_events(&client.id, 0, 10_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.consent_id == *id && e.event_type == ConsentEventType::Archived)
            .count()
    }

    engine_db_tests! {
        async fn a_persons_consents_are_listed_newest_first_a_page_at_a_time_with_their_uses(url) {
            let store = store(&url).await;
            let (bank, _) = client("Bank");
            let (other_bank, _) = client("Other bank");
            store.insert_client(&bank).await.unwrap();
            store.insert_client(&other_bank).await.unwrap();
            let (anne, bo) = (nin("14842249091"), nin("29868099311"));
            let mut given = Vec::new();
            for i in 0..25 {
                let kind = if i % 3 == 0 { ConsentKind::Agreement } else { ConsentKind::Regular };
                let c = consent(if i % 2 == 0 { &bank } else { &other_bank }, &anne, kind, i / 2);
                store.insert_consent(&c).await.unwrap();
                given.push(c);
            }
            store.insert_consent(&consent(&bank, &bo, ConsentKind::Regular, 100)).await.unwrap();

            let used = &given[24];
            let report = vec![
                CreditorUsage { id: "923456783".into(), name: "Nordlys Bank ASA".into(), asked: true, served: Served::Answered, failure: None },
                CreditorUsage { id: "5560000001".into(), name: "Svensk Kredit AB".into(), asked: true, served: Served::Stored, failure: Some(CreditorFailure::Timeout) },
                CreditorUsage { id: "987654321".into(), name: "Fjell Finans".into(), asked: false, served: Served::Missing, failure: Some(CreditorFailure::CircuitOpen) },
            ];
            for i in 0..3 {
                let creditors = if i == 2 { report.clone() } else { Vec::new() };
                let lookup = DebtLookup { consent_id: used.id, client_id: used.client_id.clone(), purposes: vec![Purpose::Presentation], at: at(200 + i), trace_id: format!("t{i}"), creditors };
                assert!(matches!(store.look_up_debt(&lookup).await.unwrap(), DebtLookupOutcome::Served { .. }));
            }

            let first = store.consents_of_person(&anne, 0, 20).await.unwrap();
            assert_eq!((first.consents.len(), first.total), (20, 25));
            let second = store.consents_of_person(&anne, 20, 20).await.unwrap();
            assert_eq!((second.consents.len(), second.total), (5, 25));
            let past = store.consents_of_person(&anne, 40, 20).await.unwrap();
            assert_eq!((past.consents.len(), past.total), (0, 25), "a page past the end still tells the total");

            let listed: Vec<&(Consent, u64)> = first.consents.iter().chain(second.consents.iter()).collect();
            let mut ids: Vec<ConsentId> = listed.iter().map(|(c, _)| c.id).collect();
            assert!(listed.windows(2).all(|w| w[0].0.created_at >= w[1].0.created_at), "newest first");
            ids.sort_by_key(|id| id.to_string());
            ids.dedup();
            assert_eq!(ids.len(), 25, "the pages neither overlap nor leave one out");
            assert!(listed.iter().all(|(c, _)| c.nin == anne), "only the person's own");
            assert_eq!(listed[0].0, *used, "the newest is first and comes back whole");
            assert_eq!(listed[0].1, 3, "with its number of uses");
            assert!(listed[1..].iter().all(|(_, uses)| *uses == 0));
            assert_eq!(store.consents_of_person(&nin("01019000083"), 0, 20).await.unwrap(), samtykke_core::store::PersonConsents { consents: vec![], total: 0 });

            let page = store.person_consent_usage(&anne, &used.id, 0, 2).await.unwrap().unwrap();
            assert_eq!(page.consent, *used);
            assert_eq!(page.total, 3);
            assert_eq!(page.uses.iter().map(|u| u.used_at).collect::<Vec<_>>(), vec![at(202), at(201)], "newest first");
            assert_eq!(page.uses[0].client_id, used.client_id);
            assert_eq!(page.uses[0].creditors.as_ref(), Some(&report), "each use keeps its per-creditor report");
            assert_eq!(page.uses[1].creditors.as_deref(), Some(&[][..]), "a lookup with no creditor has an empty report");
            let audit = store.consent_usage(&used.id).await.unwrap();
            assert_eq!(audit.iter().map(|u| u.trace_id.as_str()).collect::<Vec<_>>(), ["t0", "t1", "t2"], "the auditor's view, oldest first");
            assert_eq!(audit[2].creditors.as_ref(), Some(&report));
            let rest = store.person_consent_usage(&anne, &used.id, 2, 2).await.unwrap().unwrap();
            assert_eq!(rest.uses.iter().map(|u| u.trace_id.as_str()).collect::<Vec<_>>(), vec!["t0"]);
            assert!(store.person_consent_usage(&bo, &used.id, 0, 2).await.unwrap().is_none(), "another person's consent is not found");
            assert!(store.person_consent_usage(&anne, &ConsentId::generate(), 0, 2).await.unwrap().is_none());
        }

        async fn a_person_withdraws_only_their_own_active_consent_once(url) {
            let store = store(&url).await;
            let (bank, _) = client("Bank");
            store.insert_client(&bank).await.unwrap();
            let (anne, bo) = (nin("14842249091"), nin("29868099311"));
            let c = consent(&bank, &anne, ConsentKind::Regular, 0);
            store.insert_consent(&c).await.unwrap();
            let (_, mut bound) = token_for(&bank);
            bound.consent_id = Some(c.id);
            store.insert_access_token(&bound).await.unwrap();

            assert_eq!(store.revoke_consent_of_person(&c.id, &bo, at(10)).await.unwrap(), RevokeOutcome::NotFound, "another person's");
            assert_eq!(store.revoke_consent_of_person(&ConsentId::generate(), &anne, at(10)).await.unwrap(), RevokeOutcome::NotFound);
            assert_eq!(store.find_consent(&c.id).await.unwrap().unwrap().status, ConsentStatus::Active, "untouched");
            assert_eq!(archived(&store, &bank, &c.id).await, 0);

            assert_eq!(store.revoke_consent_of_person(&c.id, &anne, at(10)).await.unwrap(), RevokeOutcome::Revoked);
            let stored = store.find_consent(&c.id).await.unwrap().unwrap();
            assert_eq!((stored.status, stored.revoked_by, stored.ended_at), (ConsentStatus::Revoked, Some(RevokedBy::Individual), Some(at(10))));
            assert_eq!(archived(&store, &bank, &c.id).await, 1);
            assert!(store.find_access_token(&bound.hash).await.unwrap().unwrap().revoked, "its stored tokens are revoked");
            let (_, mut sealed) = token_for(&bank);
            sealed.consent_id = Some(c.id);
            assert!(store.sealed_token_revoked(&sealed, 0).await.unwrap(), "and its sealed ones no longer count");

            assert_eq!(store.revoke_consent_of_person(&c.id, &anne, at(20)).await.unwrap(), RevokeOutcome::AlreadyEnded);
            assert_eq!(archived(&store, &bank, &c.id).await, 1, "no second event");
            assert_eq!(store.find_consent(&c.id).await.unwrap().unwrap().ended_at, Some(at(10)));

            // One past its time is ended even before the janitor marks it.
            let single = Consent::new(bank.id.clone(), anne.clone(), ConsentScope::parse("debt.unsecured.presentation").unwrap(), ConsentKind::Regular, None, at(0));
            store.insert_consent(&single).await.unwrap();
            assert_eq!(store.revoke_consent_of_person(&single.id, &anne, at(3600)).await.unwrap(), RevokeOutcome::AlreadyEnded);
            assert_eq!(archived(&store, &bank, &single.id).await, 0);
        }
    }
}

/// Live creditors (issue 21): the registry, the daily claim, the streamed
/// replacement of a creditor's loans, pushes and the stored data per
/// creditor.
mod creditors {
    use std::time::Duration;

    use samtykke_core::creditor::{
        Creditor, CreditorEndpoint, FinancialInstitutionId, SyncId, SyncOutcome, SyncReport,
    };
    use samtykke_core::debt::{parse_delivery, DebtEntry};
    use samtykke_core::domain::{Nin, NinPolicy, OrgNumber};
    use samtykke_core::store::StoreError;

    use super::{at, store};

    pub fn fi(s: &str) -> FinancialInstitutionId {
        FinancialInstitutionId::parse(s).unwrap()
    }

    pub fn creditor(id: &str, name: &str) -> Creditor {
        Creditor {
            id: fi(id),
            name: name.to_owned(),
            endpoint: CreditorEndpoint::parse("https://creditor.example/api/", false).unwrap(),
            timeout: Duration::from_millis(500),
            max_concurrent: Some(8),
            certificate_org: None,
            always_ask: false,
            enabled: true,
            page_size: None,
            created_at: at(0),
        }
    }

    const CARD: &str = r#"{"type": "chargeCard", "accountID": "ACC", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0, "interestBearingBalance": 0, "nonInterestBearingBalance": 100}"#;

    /// A delivery of `(customer, institution, accountIDs)`.
    pub fn delivery(customers: &[(&str, &str, &[&str])]) -> samtykke_core::debt::Delivery {
        let body: Vec<String> = customers
            .iter()
            .map(|(nin, fi, accounts)| {
                let loans: Vec<String> = accounts.iter().map(|a| CARD.replace("ACC", a)).collect();
                format!(
                    r#"{{"customerID": "{nin}", "financialInstitutionID": "{fi}", "loans": [{}]}}"#,
                    loans.join(",")
                )
            })
            .collect();
        let json = format!(
            r#"{{"providerID": "9908:985399077", "customers": [{}]}}"#,
            body.join(",")
        );
        parse_delivery(&json, NinPolicy::AllowSynthetic).unwrap()
    }

    const ANNE: &str = "14842249091";
    const BO: &str = "29868099311";

    fn nin(s: &str) -> Nin {
        Nin::parse(s, NinPolicy::AllowSynthetic).unwrap()
    }

    fn accounts(entries: &[DebtEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.account_id.as_str()).collect()
    }

    engine_db_tests! {
        async fn creditors_round_trip_and_report_missing_ones(url) {
            let store = store(&url).await;
            let mut nordlys = creditor("923456783", "Nordlys Bank ASA");
            nordlys.certificate_org = Some(OrgNumber::parse("920013015").unwrap());
            nordlys.page_size = Some(500);
            let svensk = creditor("5560001234", "Svensk Kredit AB");
            store.insert_creditor(&nordlys).await.unwrap();
            store.insert_creditor(&svensk).await.unwrap();
            assert!(matches!(store.insert_creditor(&nordlys).await, Err(StoreError::Conflict(_))));

            let found = store.find_creditor(&nordlys.id).await.unwrap().unwrap();
            assert_eq!(found.creditor, nordlys);
            assert_eq!(found.sync, Default::default());
            assert_eq!(found.stored_at, None);
            let ids: Vec<_> = store.list_creditors().await.unwrap().into_iter().map(|r| r.creditor.id).collect();
            assert_eq!(ids, [fi("5560001234"), fi("923456783")]);

            let mut changed = nordlys.clone();
            changed.enabled = false;
            changed.always_ask = true;
            changed.timeout = Duration::from_millis(250);
            changed.endpoint = CreditorEndpoint::parse("http://127.0.0.1:9/", true).unwrap();
            store.update_creditor(&changed).await.unwrap();
            assert_eq!(store.find_creditor(&nordlys.id).await.unwrap().unwrap().creditor, changed);

            // By certificate: its IT provider's number, or its own.
            let by_provider = store.find_creditors_by_certificate_org(&OrgNumber::parse("920013015").unwrap()).await.unwrap();
            assert_eq!(by_provider, [changed.clone()]);
            assert!(store.find_creditors_by_certificate_org(&OrgNumber::parse("923456783").unwrap()).await.unwrap().is_empty());
            let own = creditor("934567897", "Fjord Finans AS");
            store.insert_creditor(&own).await.unwrap();
            assert_eq!(store.find_creditors_by_certificate_org(&OrgNumber::parse("934567897").unwrap()).await.unwrap(), std::slice::from_ref(&own));

            let ghost = creditor("974760673", "Ghost");
            assert!(store.find_creditor(&ghost.id).await.unwrap().is_none());
            assert!(matches!(store.update_creditor(&ghost).await, Err(StoreError::NotFound)));
            assert!(matches!(store.delete_creditor(&ghost.id).await, Err(StoreError::NotFound)));
            let report = SyncReport { at: at(1), outcome: SyncOutcome::Ok, loans: Some(1), error: None };
            assert!(matches!(store.record_sync_outcome(&ghost.id, &report).await, Err(StoreError::NotFound)));
            assert!(!store.claim_daily_sync(&ghost.id, at(0).date()).await.unwrap());

            // Removing a creditor removes its stored loans too.
            store.import_delivery(&delivery(&[(ANNE, "934567897", &["F-1"]), (ANNE, "923456783", &["N-1"])]), at(7)).await.unwrap();
            store.delete_creditor(&own.id).await.unwrap();
            assert!(store.find_creditor(&own.id).await.unwrap().is_none());
            assert_eq!(accounts(&store.debt_of(&nin(ANNE)).await.unwrap()), ["N-1"]);
        }

        async fn sync_outcomes_are_recorded_with_consecutive_failures(url) {
            let store = store(&url).await;
            let c = creditor("923456783", "Nordlys Bank ASA");
            store.insert_creditor(&c).await.unwrap();
            let failed = |t, outcome| SyncReport { at: at(t), outcome, loans: None, error: Some("page 0: the creditor failed with status 503".into()) };
            store.record_sync_outcome(&c.id, &failed(10, SyncOutcome::Failed)).await.unwrap();
            store.record_sync_outcome(&c.id, &failed(20, SyncOutcome::Invalid)).await.unwrap();
            let state = store.find_creditor(&c.id).await.unwrap().unwrap().sync;
            assert_eq!((state.last_attempt_at, state.last_success_at, state.last_outcome, state.consecutive_failures), (Some(at(20)), None, Some(SyncOutcome::Invalid), 2));
            assert!(state.last_error.unwrap().contains("503"));
            store.record_sync_outcome(&c.id, &SyncReport { at: at(30), outcome: SyncOutcome::Ok, loans: Some(42), error: None }).await.unwrap();
            store.record_sync_outcome(&c.id, &failed(40, SyncOutcome::Failed)).await.unwrap();
            let state = store.find_creditor(&c.id).await.unwrap().unwrap().sync;
            assert_eq!((state.last_attempt_at, state.last_success_at, state.last_size, state.consecutive_failures), (Some(at(40)), Some(at(30)), Some(42), 1));
            assert_eq!(state.last_outcome, Some(SyncOutcome::Failed));
        }

        async fn the_daily_claim_goes_to_exactly_one_of_concurrent_claimers(url) {
            // Two stores on one database, as two server processes.
            let (a, b) = (store(&url).await, store(&url).await);
            let c = creditor("923456783", "Nordlys Bank ASA");
            a.insert_creditor(&c).await.unwrap();
            let day = at(0).date();
            let claims = futures::future::join_all((0..8).map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let id = c.id.clone();
                async move { s.claim_daily_sync(&id, day).await.unwrap() }
            })).await;
            assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
            assert!(!a.claim_daily_sync(&c.id, day).await.unwrap());
            assert_eq!(b.find_creditor(&c.id).await.unwrap().unwrap().sync.claimed_day, Some(day));
            // An earlier day is no claim; the next day is one, once.
            assert!(!b.claim_daily_sync(&c.id, day.previous_day().unwrap()).await.unwrap());
            let next = day.next_day().unwrap();
            assert!(b.claim_daily_sync(&c.id, next).await.unwrap());
            assert!(!a.claim_daily_sync(&c.id, next).await.unwrap());
        }

        async fn a_staged_replacement_is_invisible_until_swapped_in_and_an_abandoned_one_changes_nothing(url) {
            let store = store(&url).await;
            let nordlys = creditor("923456783", "Nordlys Bank ASA");
            store.insert_creditor(&nordlys).await.unwrap();
            store.import_delivery(&delivery(&[(ANNE, "923456783", &["OLD-1"]), (BO, "923456783", &["OLD-2"]), (BO, "934567897", &["OTHER"])]), at(7)).await.unwrap();
            let provider = samtykke_core::debt::ProviderId::parse("9908:985399077").unwrap();

            // Abandoned: nothing changes.
            let sync = SyncId::generate();
            store.stage_loans(&sync, &delivery(&[(ANNE, "923456783", &["NEW-1"])]).entries).await.unwrap();
            assert_eq!(accounts(&store.debt_of(&nin(ANNE)).await.unwrap()), ["OLD-1"]);
            store.abandon_loan_replacement(&sync).await.unwrap();
            assert_eq!(accounts(&store.debt_of(&nin(ANNE)).await.unwrap()), ["OLD-1"]);

            // Staged in two batches, swapped in: the creditor's loans are
            // exactly the staged ones; other creditors' stay.
            let sync = SyncId::generate();
            store.stage_loans(&sync, &delivery(&[(ANNE, "923456783", &["NEW-1", "NEW-2"])]).entries).await.unwrap();
            store.stage_loans(&sync, &[]).await.unwrap();
            store.stage_loans(&sync, &delivery(&[(BO, "923456783", &["NEW-3"])]).entries).await.unwrap();
            assert_eq!(accounts(&store.debt_of(&nin(BO)).await.unwrap()).len(), 2);
            let n = store.finish_loan_replacement(&sync, &nordlys.id, &provider, at(100)).await.unwrap();
            assert_eq!(n, 3);
            assert_eq!(accounts(&store.debt_of(&nin(ANNE)).await.unwrap()), ["NEW-1", "NEW-2"]);
            let mut bo = accounts(&store.debt_of(&nin(BO)).await.unwrap()).into_iter().map(str::to_owned).collect::<Vec<_>>();
            bo.sort();
            assert_eq!(bo, ["NEW-3", "OTHER"]);
            assert_eq!(store.find_creditor(&nordlys.id).await.unwrap().unwrap().stored_at, Some(at(100)));

            // An empty replacement empties it (a transferring institution).
            let sync = SyncId::generate();
            assert_eq!(store.finish_loan_replacement(&sync, &nordlys.id, &provider, at(200)).await.unwrap(), 0);
            assert!(store.debt_of(&nin(ANNE)).await.unwrap().is_empty());
            assert_eq!(accounts(&store.debt_of(&nin(BO)).await.unwrap()), ["OTHER"]);
        }

        async fn stored_debt_is_grouped_by_creditor_with_its_delivery_time_and_registered_name(url) {
            let store = store(&url).await;
            let d = delivery(&[(ANNE, "923456783", &["N-1", "N-2"]), (ANNE, "5560001234", &["S-1"]), (BO, "923456783", &["N-3"])]);
            store.import_delivery(&d, at(7)).await.unwrap();
            let stored = store.stored_debt_of(&nin(ANNE)).await.unwrap();
            assert_eq!(stored.len(), 2);
            // Unregistered: the delivered names ("Org. nr. …"), ordered by name.
            assert_eq!(stored[0].id, fi("5560001234"));
            assert_eq!(stored[0].name, "Org. nr. 5560001234");
            assert_eq!(accounts(&stored[1].entries), ["N-1", "N-2"]);
            for s in &stored {
                assert_eq!(s.stored_at, Some(at(7)), "the import's time");
            }
            // A registered creditor's name wins.
            store.insert_creditor(&creditor("923456783", "Aurora Bank ASA")).await.unwrap();
            let stored = store.stored_debt_of(&nin(ANNE)).await.unwrap();
            assert_eq!((stored[0].id.clone(), stored[0].name.as_str()), (fi("923456783"), "Aurora Bank ASA"));
            assert!(stored[0].entries.iter().all(|e| e.creditor_name == "Aurora Bank ASA"));
            let nobody = samtykke_http::creditors::simulator::synthetic_numbers().next().unwrap();
            assert!(store.stored_debt_of(&nin(&nobody)).await.unwrap().is_empty());
        }

        async fn a_push_replaces_only_the_pushed_customers_at_the_pushed_institutions(url) {
            let store = store(&url).await;
            store.import_delivery(&delivery(&[(ANNE, "923456783", &["N-1", "N-2"]), (BO, "923456783", &["N-3"]), (ANNE, "934567897", &["F-1"])]), at(7)).await.unwrap();
            // Anne's loans at Nordlys: one closed, one new; Bo untouched.
            let push = delivery(&[(ANNE, "923456783", &["N-2", "N-9"])]);
            assert_eq!(store.apply_push(&push, at(500)).await.unwrap(), 2);
            let anne = store.stored_debt_of(&nin(ANNE)).await.unwrap();
            let nordlys = anne.iter().find(|s| s.id == fi("923456783")).unwrap();
            assert_eq!(accounts(&nordlys.entries), ["N-2", "N-9"]);
            assert_eq!(nordlys.stored_at, Some(at(500)));
            let fjord = anne.iter().find(|s| s.id == fi("934567897")).unwrap();
            assert_eq!(accounts(&fjord.entries), ["F-1"]);
            assert_eq!(fjord.stored_at, Some(at(7)));
            assert_eq!(accounts(&store.debt_of(&nin(BO)).await.unwrap()), ["N-3"]);
            // A customer pushed with no loans has none left there.
            assert_eq!(store.apply_push(&delivery(&[(ANNE, "923456783", &[])]), at(600)).await.unwrap(), 0);
            assert_eq!(accounts(&store.debt_of(&nin(ANNE)).await.unwrap()), ["F-1"]);
        }
    }
}
