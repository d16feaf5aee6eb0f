//! One debt fetch (SPEC §7) as the store carries it out: the consent is
//! judged and the usage record, with its per-creditor report, is written as
//! one atomic step, so that what is logged is what is sent.
//!
//! The lookup path judges the consent before it asks any creditor (a
//! refused lookup calls none), composes the answer
//! ([`crate::creditor_lookup`]) and then lets the store judge again and
//! record: a single-use consent is consumed exactly once, and a refusal
//! there discards what the creditors sent.
//!
//! The decision is the pure [`DebtLookup::judge`]; a store calls it inside
//! its transaction (SQLite) or states the same conditions in its one
//! statement and calls it to name the refusal (PostgreSQL).

use time::OffsetDateTime;

use crate::consent::{Consent, ConsentId, UsageRecord};
use crate::creditor_lookup::CreditorUsage;
use crate::domain::{ClientId, Purpose};

/// A client's request to see the debt behind one consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebtLookup {
    pub consent_id: ConsentId,
    pub client_id: ClientId,
    /// The purposes the access token's scopes grant.
    pub purposes: Vec<Purpose>,
    /// When the lookup is judged and logged.
    pub at: OffsetDateTime,
    pub trace_id: String,
    /// What each creditor did, logged with the use.
    pub creditors: Vec<CreditorUsage>,
}

/// Why a lookup is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebtLookupRefusal {
    /// Unknown, another client's, or no longer active at the lookup's time.
    /// Which of these, and how the caller's own consent ended, is asked
    /// only then ([`Consent::end_told_to`]), so that a served lookup pays
    /// nothing for it.
    NoUsableConsent,
    /// The consent is usable, but the token grants none of its purpose.
    PurposeNotGranted,
}

/// What [`crate::store::Store::look_up_debt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebtLookupOutcome {
    /// The usage record is written (a single-use consent is consumed);
    /// `consent` is as it was when used.
    Served { consent: Consent },
    /// Nothing is written.
    Refused(DebtLookupRefusal),
}

impl DebtLookup {
    /// May `consent` (as stored now, if at all) serve this lookup? Returns
    /// the consent that may.
    pub fn judge(&self, consent: Option<Consent>) -> Result<Consent, DebtLookupRefusal> {
        let consent = consent
            .filter(|c| c.usable_by(&self.client_id, self.at))
            .ok_or(DebtLookupRefusal::NoUsableConsent)?;
        if !self.purposes.contains(&consent.purpose) {
            return Err(DebtLookupRefusal::PurposeNotGranted);
        }
        Ok(consent)
    }

    /// The usage record a served lookup writes.
    pub fn usage(&self, purpose: Purpose) -> UsageRecord {
        UsageRecord {
            consent_id: self.consent_id,
            client_id: self.client_id.clone(),
            used_at: self.at,
            purpose,
            trace_id: self.trace_id.clone(),
            creditors: Some(self.creditors.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::consent::{ConsentKind, ConsentScope, ConsentStatus};
    use crate::domain::{Nin, NinPolicy};

    fn consent(purpose: &str, at: OffsetDateTime) -> Consent {
        Consent::new(
            ClientId::parse("bank").unwrap(),
            Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap(),
            ConsentScope::parse(purpose).unwrap(),
            ConsentKind::Regular,
            None,
            at,
        )
    }

    fn lookup(c: &Consent, purposes: Vec<Purpose>, at: OffsetDateTime) -> DebtLookup {
        DebtLookup {
            consent_id: c.id,
            client_id: ClientId::parse("bank").unwrap(),
            purposes,
            at,
            trace_id: "t".into(),
            creditors: Vec::new(),
        }
    }

    #[test]
    fn an_active_consent_of_the_client_with_a_granted_purpose_serves() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let c = consent("debt.unsecured.processing.10", t0);
        let l = lookup(&c, vec![Purpose::Presentation, Purpose::Processing], t0);
        assert_eq!(l.judge(Some(c.clone())), Ok(c.clone()));
        let usage = l.usage(c.purpose);
        assert_eq!(
            (usage.consent_id, usage.used_at, usage.purpose),
            (c.id, t0, Purpose::Processing)
        );
    }

    #[test]
    fn a_missing_foreign_ended_or_expired_consent_is_no_usable_consent() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let c = consent("debt.unsecured.processing.10", t0);
        let l = lookup(&c, vec![Purpose::Processing], t0);
        assert_eq!(l.judge(None), Err(DebtLookupRefusal::NoUsableConsent));

        let mut foreign = c.clone();
        foreign.client_id = ClientId::parse("other").unwrap();
        assert_eq!(
            l.judge(Some(foreign.clone())),
            Err(DebtLookupRefusal::NoUsableConsent)
        );

        let mut consumed = c.clone();
        consumed.status = ConsentStatus::Consumed;
        assert_eq!(
            l.judge(Some(consumed.clone())),
            Err(DebtLookupRefusal::NoUsableConsent)
        );

        let late = lookup(&c, vec![Purpose::Processing], c.expires_at);
        assert_eq!(
            late.judge(Some(c.clone())),
            Err(DebtLookupRefusal::NoUsableConsent)
        );
        let just_in_time = lookup(
            &c,
            vec![Purpose::Processing],
            c.expires_at - Duration::seconds(1),
        );
        assert_eq!(just_in_time.judge(Some(c.clone())), Ok(c.clone()));
    }

    #[test]
    fn a_usable_consent_for_a_purpose_the_token_lacks_is_refused_as_such() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let c = consent("debt.unsecured.presentation.10", t0);
        let l = lookup(&c, vec![Purpose::Processing], t0);
        assert_eq!(
            l.judge(Some(c.clone())),
            Err(DebtLookupRefusal::PurposeNotGranted)
        );
        let none = lookup(&c, vec![], t0);
        assert_eq!(
            none.judge(Some(c.clone())),
            Err(DebtLookupRefusal::PurposeNotGranted)
        );
    }
}
