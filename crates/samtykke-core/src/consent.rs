//! Consents (SPEC §5): purpose, kind, duration, lifecycle, events and usage.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::domain::{ClientId, Nin, Purpose};

/// How long a single-use consent may wait for its one fetch.
pub const SINGLE_USE_WINDOW: Duration = Duration::minutes(10);

/// How long consent events are kept (SPEC §8).
pub const EVENT_RETENTION: Duration = Duration::days(7);

impl Purpose {
    /// The scope name that stands for the purpose.
    pub fn scope_name(self) -> &'static str {
        match self {
            Self::Presentation => "debt.unsecured.presentation",
            Self::Processing => "debt.unsecured.processing",
        }
    }

    pub fn from_scope_name(name: &str) -> Option<Self> {
        match name {
            "debt.unsecured.presentation" => Some(Self::Presentation),
            "debt.unsecured.processing" => Some(Self::Processing),
            _ => None,
        }
    }

    /// The longest consent the purpose allows, in days.
    pub fn max_days(self) -> u32 {
        match self {
            Self::Presentation => 365,
            Self::Processing => 28,
        }
    }
}

/// Single use within [`SINGLE_USE_WINDOW`], or any number of fetches for N days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDuration {
    SingleUse,
    Days(u32),
}

impl ConsentDuration {
    /// `days` clamped to the purpose's maximum; None unless positive.
    pub fn days_for(purpose: Purpose, days: i64) -> Option<Self> {
        if days < 1 {
            return None;
        }
        let clamped = u32::try_from(days)
            .unwrap_or(u32::MAX)
            .min(purpose.max_days());
        Some(Self::Days(clamped))
    }

    pub fn length(self) -> Duration {
        match self {
            Self::SingleUse => SINGLE_USE_WINDOW,
            Self::Days(days) => Duration::days(i64::from(days)),
        }
    }

    /// Stored form: 0 for single use, else the number of days.
    pub fn as_days(self) -> u32 {
        match self {
            Self::SingleUse => 0,
            Self::Days(d) => d,
        }
    }

    pub fn from_days(days: u32) -> Self {
        if days == 0 {
            Self::SingleUse
        } else {
            Self::Days(days)
        }
    }
}

/// A debt scope with its optional duration suffix, e.g.
/// `debt.unsecured.presentation.100` (SPEC §5). The one place that knows the
/// suffix rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentScope {
    pub purpose: Purpose,
    pub duration: ConsentDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentScopeError {
    #[error("not a debt scope")]
    NotADebtScope,
    #[error("the duration suffix must be a positive whole number of days")]
    BadDuration,
}

impl ConsentScope {
    pub fn parse(input: &str) -> Result<Self, ConsentScopeError> {
        if let Some(purpose) = Purpose::from_scope_name(input) {
            return Ok(Self {
                purpose,
                duration: ConsentDuration::SingleUse,
            });
        }
        let (purpose, suffix) = [Purpose::Presentation, Purpose::Processing]
            .into_iter()
            .find_map(|p| {
                let rest = input.strip_prefix(p.scope_name())?.strip_prefix('.')?;
                Some((p, rest))
            })
            .ok_or(ConsentScopeError::NotADebtScope)?;
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConsentScopeError::BadDuration);
        }
        if suffix.bytes().all(|b| b == b'0') {
            return Err(ConsentScopeError::BadDuration);
        }
        // All digits and not zero: a positive integer, possibly huge (clamped).
        let days = suffix.parse::<i64>().unwrap_or(i64::MAX);
        let duration =
            ConsentDuration::days_for(purpose, days).ok_or(ConsentScopeError::BadDuration)?;
        Ok(Self { purpose, duration })
    }
}

/// A consent's id: a UUID, as in the published contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsentId(uuid::Uuid);

impl ConsentId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Only the hyphenated lower- or upper-case form is accepted.
    pub fn parse(input: &str) -> Option<Self> {
        if input.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(input).ok().map(Self)
    }

    /// The UUID's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentKind {
    /// From the authorization-code flow.
    Regular,
    /// Registered by the institution with `PUT /v1/consent/agreement`.
    Agreement,
}

impl ConsentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Agreement => "agreement",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "regular" => Some(Self::Regular),
            "agreement" => Some(Self::Agreement),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Active,
    Consumed,
    Expired,
    Revoked,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Consumed => "consumed",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "consumed" => Some(Self::Consumed),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// How and when a consent stopped being usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentEnd {
    /// At its expiry time.
    Expired(OffsetDateTime),
    /// By its one debt fetch (single use), at the time of that fetch.
    /// None only for a row that does not record the time.
    Consumed(Option<OffsetDateTime>),
    /// By the institution or the individual, at the time of revocation.
    /// None only for a row that does not record the time.
    Revoked(Option<OffsetDateTime>),
}

/// Who ended a revoked consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// The institution, with `DELETE /v1/debt/{id}`.
    Client,
    /// The individual, in the portal.
    Individual,
}

impl RevokedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Individual => "individual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Self::Client),
            "individual" => Some(Self::Individual),
            _ => None,
        }
    }
}

/// One individual's consent to one client for one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: ConsentId,
    pub client_id: ClientId,
    pub nin: Nin,
    pub purpose: Purpose,
    pub kind: ConsentKind,
    pub duration: ConsentDuration,
    /// The institution's own id (agreement consents).
    pub client_consent_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// As stored; see [`Consent::status_at`] for the effective status.
    pub status: ConsentStatus,
    pub revoked_by: Option<RevokedBy>,
    /// When it was consumed or revoked (to the microsecond; to the second
    /// for consents that ended before migration `20261205000013`), or its
    /// expiry time once marked expired.
    pub ended_at: Option<OffsetDateTime>,
}

impl Consent {
    /// A new active consent starting `now`.
    pub fn new(
        client_id: ClientId,
        nin: Nin,
        scope: ConsentScope,
        kind: ConsentKind,
        client_consent_id: Option<String>,
        now: OffsetDateTime,
    ) -> Self {
        // Consents are kept to the second; start on a whole second so that
        // what is answered now equals what is read back later.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self {
            id: ConsentId::generate(),
            client_id,
            nin,
            purpose: scope.purpose,
            kind,
            duration: scope.duration,
            client_consent_id,
            created_at: now,
            expires_at: now + scope.duration.length(),
            status: ConsentStatus::Active,
            revoked_by: None,
            ended_at: None,
        }
    }

    /// The status at `now`: an active consent past its expiry is expired even
    /// before the janitor has marked it.
    pub fn status_at(&self, now: OffsetDateTime) -> ConsentStatus {
        match self.status {
            ConsentStatus::Active if now >= self.expires_at => ConsentStatus::Expired,
            other => other,
        }
    }

    /// Whether `client` may fetch debt with this consent at `now`.
    pub fn usable_by(&self, client: &ClientId, now: OffsetDateTime) -> bool {
        self.client_id == *client && self.status_at(now) == ConsentStatus::Active
    }

    /// How the consent had ended at `now`: None while it is active.
    pub fn end_at(&self, now: OffsetDateTime) -> Option<ConsentEnd> {
        match self.status_at(now) {
            ConsentStatus::Active => None,
            // Marked expired or not yet, it expired at its expiry time.
            ConsentStatus::Expired => Some(ConsentEnd::Expired(self.expires_at)),
            ConsentStatus::Consumed => Some(ConsentEnd::Consumed(self.ended_at)),
            ConsentStatus::Revoked => Some(ConsentEnd::Revoked(self.ended_at)),
        }
    }

    /// The end that may be told to `client` at `now` (SPEC §7): that of
    /// its own consent that is no longer active. None for another client's
    /// consent, whatever its state, so that the answer for it is the one
    /// for an unknown id; and None while the consent is active.
    pub fn end_told_to(&self, client: &ClientId, now: OffsetDateTime) -> Option<ConsentEnd> {
        if self.client_id == *client {
            self.end_at(now)
        } else {
            None
        }
    }

    /// Whether a repeated agreement registration carries the same data.
    pub fn same_agreement(&self, other: &Consent) -> bool {
        self.client_id == other.client_id
            && self.nin == other.nin
            && self.purpose == other.purpose
            && self.duration == other.duration
            && self.client_consent_id == other.client_consent_id
    }
}

/// The two event types of the feed (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentEventType {
    /// `SAMTYKKE_OPPRETTET`
    Created,
    /// `SAMTYKKE_ARKIVERT`: revoked, expired or consumed.
    Archived,
}

impl ConsentEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "SAMTYKKE_OPPRETTET",
            Self::Archived => "SAMTYKKE_ARKIVERT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SAMTYKKE_OPPRETTET" => Some(Self::Created),
            "SAMTYKKE_ARKIVERT" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// One event in the global, only-growing feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub sequence_nr: i64,
    pub event_id: uuid::Uuid,
    pub event_type: ConsentEventType,
    pub client_id: ClientId,
    pub consent_id: ConsentId,
    pub purpose: Purpose,
    pub client_consent_id: Option<String>,
    pub timestamp: OffsetDateTime,
}

/// One successful debt fetch, written before the response is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub consent_id: ConsentId,
    pub client_id: ClientId,
    pub used_at: OffsetDateTime,
    pub purpose: Purpose,
    pub trace_id: String,
    /// Per creditor: asked, and served fresh, from stored data or missing
    /// (issue 21). None in records written before the report existed.
    pub creditors: Option<Vec<crate::creditor_lookup::CreditorUsage>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NinPolicy;

    #[test]
    fn scopes_without_suffix_are_single_use() {
        let s = ConsentScope::parse("debt.unsecured.presentation").unwrap();
        assert_eq!(s.purpose, Purpose::Presentation);
        assert_eq!(s.duration, ConsentDuration::SingleUse);
    }

    #[test]
    fn duration_suffixes_are_clamped_to_the_purpose_maximum() {
        let d = |s| ConsentScope::parse(s).map(|c| c.duration);
        assert_eq!(
            d("debt.unsecured.presentation.100"),
            Ok(ConsentDuration::Days(100))
        );
        assert_eq!(
            d("debt.unsecured.presentation.366"),
            Ok(ConsentDuration::Days(365))
        );
        assert_eq!(
            d("debt.unsecured.processing.28"),
            Ok(ConsentDuration::Days(28))
        );
        assert_eq!(
            d("debt.unsecured.processing.29"),
            Ok(ConsentDuration::Days(28))
        );
        assert_eq!(
            d("debt.unsecured.processing.99999999999999999999999"),
            Ok(ConsentDuration::Days(28))
        );
    }

    #[test]
    fn bad_suffixes_and_other_scopes_are_refused() {
        for s in [
            "debt.unsecured.presentation.0",
            "debt.unsecured.presentation.000",
            "debt.unsecured.presentation.-1",
            "debt.unsecured.presentation.+5",
            "debt.unsecured.presentation.1.5",
            "debt.unsecured.presentation.abc",
            "debt.unsecured.presentation.",
        ] {
            assert_eq!(
                ConsentScope::parse(s),
                Err(ConsentScopeError::BadDuration),
                "{s}"
            );
        }
        for s in [
            "openid",
            "consent.create",
            "debt.unsecured",
            "debt.secured.presentation.5",
            "",
        ] {
            assert_eq!(
                ConsentScope::parse(s),
                Err(ConsentScopeError::NotADebtScope),
                "{s}"
            );
        }
    }

    #[test]
    fn an_active_consent_expires_by_time_and_belongs_to_its_client() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let owner = ClientId::parse("a").unwrap();
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let scope = ConsentScope::parse("debt.unsecured.processing").unwrap();
        let c = Consent::new(owner.clone(), nin, scope, ConsentKind::Regular, None, t0);
        assert_eq!(c.expires_at, t0 + Duration::minutes(10));
        assert!(c.usable_by(&owner, t0));
        assert!(!c.usable_by(&ClientId::parse("b").unwrap(), t0));
        assert_eq!(
            c.status_at(t0 + Duration::minutes(10)),
            ConsentStatus::Expired
        );
        assert!(!c.usable_by(&owner, t0 + Duration::minutes(10)));
    }

    #[test]
    fn the_end_of_a_consent_is_told_only_to_its_own_client() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let owner = ClientId::parse("a").unwrap();
        let other = ClientId::parse("b").unwrap();
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let scope = ConsentScope::parse("debt.unsecured.processing.2").unwrap();
        let c = Consent::new(owner.clone(), nin, scope, ConsentKind::Agreement, None, t0);
        let expiry = t0 + Duration::days(2);
        assert_eq!(c.end_told_to(&owner, t0), None, "active");
        assert_eq!(
            c.end_told_to(&owner, expiry - Duration::nanoseconds(1)),
            None
        );
        assert_eq!(
            c.end_told_to(&owner, expiry),
            Some(ConsentEnd::Expired(expiry)),
            "expired by time before the janitor marked it"
        );
        let mut marked = c.clone();
        marked.status = ConsentStatus::Expired;
        marked.ended_at = Some(expiry);
        assert_eq!(
            marked.end_told_to(&owner, expiry + Duration::days(9)),
            Some(ConsentEnd::Expired(expiry))
        );
        let used = t0 + Duration::microseconds(1_500_001);
        let mut consumed = c.clone();
        consumed.status = ConsentStatus::Consumed;
        consumed.ended_at = Some(used);
        assert_eq!(
            consumed.end_told_to(&owner, t0),
            Some(ConsentEnd::Consumed(Some(used)))
        );
        // Consumed or revoked before its expiry, it stays so after it.
        assert_eq!(
            consumed.end_told_to(&owner, expiry),
            Some(ConsentEnd::Consumed(Some(used)))
        );
        let mut revoked = c.clone();
        revoked.status = ConsentStatus::Revoked;
        revoked.revoked_by = Some(RevokedBy::Client);
        revoked.ended_at = Some(used);
        assert_eq!(
            revoked.end_told_to(&owner, t0),
            Some(ConsentEnd::Revoked(Some(used)))
        );
        for ended in [&c, &marked, &consumed, &revoked] {
            assert_eq!(ended.end_told_to(&other, expiry), None);
        }
    }

    #[test]
    fn consent_ids_are_hyphenated_uuids() {
        let id = ConsentId::generate();
        assert_eq!(ConsentId::parse(&id.to_string()), Some(id));
        assert_eq!(ConsentId::parse("not-a-uuid"), None);
        assert_eq!(ConsentId::parse(&id.to_string().replace('-', "")), None);
    }
}
