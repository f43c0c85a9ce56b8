//! Residency: where a node runs and where its stores keep data, checked
//! against the jurisdictions the node and each tenant allow (DESIGN
//! invariant 11: residency is enforced, not described).
//!
//! A [`Residency`] is built from the running configuration: the node's own
//! jurisdiction, the jurisdictions the node allows, and one [`StorePlace`]
//! per place the ledger keeps data (the log, the projections, the access
//! file, the key directory), each with the jurisdiction its operator
//! declared for it. [`Residency::check`] refuses the whole configuration,
//! naming every violation, when the node or any store lies outside the
//! node's allowed jurisdictions or outside any tenant's; the binary calls it
//! before it opens a store, so a ledger that would keep a tenant's data in
//! the wrong place never starts. [`Residency::report`] is the residency
//! report, made from the same values.
//!
//! A jurisdiction is `EU` or an ISO 3166-1 alpha-2 country code (`DE`,
//! `FR`, `US`, …). A place is *within* an allowed jurisdiction when it is
//! the same one, or when the allowed one is `EU` and the place is one of the
//! 27 member states ([`EU_MEMBERS`]). `EU` is not within `DE`: a store
//! declared only as "somewhere in the EU" cannot prove it is in Germany.
//! Unknown two-letter codes are accepted (the list changes; a typo can only
//! make a check stricter, never let a store through).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The member states of the European Union, by ISO 3166-1 alpha-2 code
/// (Greece is `GR`, as ISO has it, not the EU's own `EL`).
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// A jurisdiction: the European Union (`EU`), or one country by its
/// ISO 3166-1 alpha-2 code. Always two ASCII capitals: parsing and
/// [`Jurisdiction::from_code`] are the only ways to make one, so every value
/// can be written into a record ([`crate::codec`], format 2) and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jurisdiction([u8; 2]);

impl Jurisdiction {
    /// The European Union as a whole.
    pub const EU: Self = Self(*b"EU");

    /// The product's default: the EU.
    pub const DEFAULT: Self = Self::EU;

    /// Whether data kept in `self` is kept in `allowed`: the same
    /// jurisdiction, or a member state when `allowed` is the EU.
    #[must_use]
    pub fn within(self, allowed: Self) -> bool {
        self == allowed
            || (allowed == Self::EU && EU_MEMBERS.iter().any(|m| m.as_bytes() == self.0))
    }

    /// Its two ASCII capitals: `EU`, or the country code.
    #[must_use]
    pub const fn code(self) -> [u8; 2] {
        self.0
    }

    /// The jurisdiction two ASCII capitals stand for (`EU` or a country
    /// code), or `None` for anything else: the inverse of
    /// [`Jurisdiction::code`], stricter than parsing text.
    #[must_use]
    pub fn from_code(code: [u8; 2]) -> Option<Self> {
        code.iter()
            .all(u8::is_ascii_uppercase)
            .then_some(Self(code))
    }

    /// Whether `self` is within any of `allowed`.
    #[must_use]
    pub fn within_any(self, allowed: &[Self]) -> bool {
        allowed.iter().any(|a| self.within(*a))
    }

    /// Parses a comma-separated list such as `EU` or `DE, FR`; empty
    /// entries are skipped, and the list must name at least one.
    ///
    /// # Errors
    /// An entry that is not a jurisdiction, or an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, ResidencyError> {
        let mut out: Vec<Self> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let j = part.parse()?;
            if !out.contains(&j) {
                out.push(j);
            }
        }
        if out.is_empty() {
            return Err(ResidencyError::EmptyList);
        }
        Ok(out)
    }
}

impl Default for Jurisdiction {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for Jurisdiction {
    type Err = ResidencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.as_bytes() {
            [a, b] => Self::from_code([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
            _ => None,
        }
        .ok_or_else(|| {
            ResidencyError::BadJurisdiction(
                // A configuration value, never personal data; cut short so an
                // error line stays one line.
                t.chars().take(16).collect(),
            )
        })
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.0;
        write!(f, "{}{}", char::from(a), char::from(b))
    }
}

impl Serialize for Jurisdiction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Jurisdiction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Writes a list of jurisdictions as `EU, DE`.
#[must_use]
pub fn list(js: &[Jurisdiction]) -> String {
    js.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A place where the ledger keeps data, and the jurisdiction declared for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorePlace {
    /// What it holds: `log`, `projections`, `access`, `keys`.
    pub role: String,
    /// How: `fjall`, `sled`, `object_store`, `files`, `memory`.
    pub backend: String,
    /// Where: a directory, a file or a URL.
    pub at: String,
    /// The jurisdiction it lies in: what its operator declared, or where
    /// the configuration itself says (an Amazon S3 region's country).
    pub jurisdiction: Jurisdiction,
}

/// One thing that lies outside an allowed jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `node`, or `store <role>`.
    pub subject: String,
    /// Where it is.
    pub jurisdiction: Jurisdiction,
    /// Whose allowed jurisdictions it lies outside: `node`, or
    /// `tenant <name>`.
    pub outside_of: String,
    /// Those allowed jurisdictions.
    pub allowed: Vec<Jurisdiction>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is in {}, outside {}'s allowed jurisdictions ({})",
            self.subject,
            self.jurisdiction,
            self.outside_of,
            list(&self.allowed)
        )
    }
}

/// Why a residency check or a jurisdiction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResidencyError {
    /// A value that is neither `EU` nor a two-letter country code.
    #[error("{0:?} is not a jurisdiction: use EU or an ISO 3166-1 alpha-2 country code such as DE")]
    BadJurisdiction(String),
    /// A list of allowed jurisdictions that names none.
    #[error("a list of allowed jurisdictions must name at least one")]
    EmptyList,
    /// The configuration keeps data outside an allowed jurisdiction.
    #[error("residency: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Violated(Vec<Violation>),
}

/// A tenant's name and the jurisdictions its data may be kept in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantResidency {
    /// The tenant.
    pub tenant: String,
    /// Where its data may be kept.
    pub allowed: Vec<Jurisdiction>,
}

/// Records of one tenant written by a node outside the tenant's allowed
/// jurisdictions ([`Residency::records_outside`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordsOutside {
    /// The tenant.
    pub tenant: String,
    /// Where the node that wrote them declared itself.
    pub written_in: Jurisdiction,
    /// How many records.
    pub records: u64,
    /// Where the tenant's data may be kept.
    pub allowed: Vec<Jurisdiction>,
}

impl fmt::Display for RecordsOutside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {} has {} record(s) written in {}, outside its allowed jurisdictions ({})",
            self.tenant,
            self.records,
            self.written_in,
            list(&self.allowed)
        )
    }
}

/// The node's declared residency: where it runs, what it allows, and where
/// each of its stores is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residency {
    node: Jurisdiction,
    allowed: Vec<Jurisdiction>,
    stores: Vec<StorePlace>,
}

/// The residency report: the running configuration, the tenants it serves
/// and every violation (none when `compliant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidencyReport {
    /// Whether nothing lies outside an allowed jurisdiction.
    pub compliant: bool,
    /// The node's own jurisdiction, where it handles plaintext in memory.
    pub node_jurisdiction: Jurisdiction,
    /// The jurisdictions the node allows.
    pub node_allowed: Vec<Jurisdiction>,
    /// Every place the ledger keeps data.
    pub stores: Vec<StorePlace>,
    /// Every tenant and what it allows.
    pub tenants: Vec<TenantResidency>,
    /// What lies outside, if anything.
    pub violations: Vec<Violation>,
}

impl Residency {
    /// A node in `node` allowing `allowed` (the node's own jurisdiction
    /// alone when `allowed` is empty), with no store declared yet.
    #[must_use]
    pub fn new(node: Jurisdiction, allowed: Vec<Jurisdiction>) -> Self {
        let allowed = if allowed.is_empty() {
            vec![node]
        } else {
            allowed
        };
        Self {
            node,
            allowed,
            stores: Vec::new(),
        }
    }

    /// Declares a place where data is kept.
    #[must_use]
    pub fn with_store(
        mut self,
        role: impl Into<String>,
        backend: impl Into<String>,
        at: impl Into<String>,
        jurisdiction: Jurisdiction,
    ) -> Self {
        self.stores.push(StorePlace {
            role: role.into(),
            backend: backend.into(),
            at: at.into(),
            jurisdiction,
        });
        self
    }

    /// The node's own jurisdiction.
    #[must_use]
    pub fn node(&self) -> Jurisdiction {
        self.node
    }

    /// The jurisdictions the node allows.
    #[must_use]
    pub fn allowed(&self) -> &[Jurisdiction] {
        &self.allowed
    }

    /// The declared places.
    #[must_use]
    pub fn stores(&self) -> &[StorePlace] {
        &self.stores
    }

    /// The node and each store, as (subject, jurisdiction).
    fn places(&self) -> impl Iterator<Item = (String, Jurisdiction)> + '_ {
        std::iter::once(("node".to_owned(), self.node)).chain(
            self.stores
                .iter()
                .map(|s| (format!("store {}", s.role), s.jurisdiction)),
        )
    }

    fn outside(&self, whose: &str, allowed: &[Jurisdiction], out: &mut Vec<Violation>) {
        for (subject, j) in self.places() {
            if !j.within_any(allowed) {
                out.push(Violation {
                    subject,
                    jurisdiction: j,
                    outside_of: whose.to_owned(),
                    allowed: allowed.to_vec(),
                });
            }
        }
    }

    /// Every violation: the node or a store outside the node's allowed
    /// jurisdictions, or outside those of one of `tenants`.
    #[must_use]
    pub fn violations(&self, tenants: &[TenantResidency]) -> Vec<Violation> {
        let mut out = Vec::new();
        self.outside("node", &self.allowed, &mut out);
        for t in tenants {
            self.outside(&format!("tenant {}", t.tenant), &t.allowed, &mut out);
        }
        out
    }

    /// Checks the node, its stores and `tenants`.
    ///
    /// # Errors
    /// [`ResidencyError::Violated`] naming every violation.
    pub fn check(&self, tenants: &[TenantResidency]) -> Result<(), ResidencyError> {
        let v = self.violations(tenants);
        if v.is_empty() {
            Ok(())
        } else {
            Err(ResidencyError::Violated(v))
        }
    }

    /// Whether a tenant allowing `allowed` may be served here: the node and
    /// every store lie within `allowed`.
    #[must_use]
    pub fn permits(&self, allowed: &[Jurisdiction]) -> bool {
        self.places().all(|(_, j)| j.within_any(allowed))
    }

    /// The jurisdictions a new tenant allows: `given`, or those the node
    /// allows when `None`.
    ///
    /// # Errors
    /// [`ResidencyError::EmptyList`] for an empty list, and
    /// [`ResidencyError::Violated`] when this node could not serve the
    /// tenant: each violation is the node or a store outside the list, of
    /// `outside_of` `the new tenant`.
    pub fn new_tenant(
        &self,
        given: Option<Vec<Jurisdiction>>,
    ) -> Result<Vec<Jurisdiction>, ResidencyError> {
        let allowed = given.unwrap_or_else(|| self.allowed.clone());
        if allowed.is_empty() {
            return Err(ResidencyError::EmptyList);
        }
        let mut outside = Vec::new();
        self.outside("the new tenant", &allowed, &mut outside);
        if outside.is_empty() {
            Ok(allowed)
        } else {
            Err(ResidencyError::Violated(outside))
        }
    }

    /// The records a verification counted ([`crate::VerifyReport::written_in`])
    /// that were written outside their tenant's allowed jurisdictions: for
    /// each tenant and jurisdiction, how many. A tenant missing from
    /// `tenants` (one the access file does not list) is held to the
    /// node's allowed jurisdictions. Records that do not say where they
    /// were written (format 1) are not counted: nothing proves them outside.
    #[must_use]
    pub fn records_outside(
        &self,
        written_in: &BTreeMap<String, BTreeMap<Option<Jurisdiction>, u64>>,
        tenants: &[TenantResidency],
    ) -> Vec<RecordsOutside> {
        let mut out = Vec::new();
        for (tenant, places) in written_in {
            let allowed = tenants
                .iter()
                .find(|t| &t.tenant == tenant)
                .map_or(self.allowed.as_slice(), |t| t.allowed.as_slice());
            for (place, records) in places {
                if let Some(j) = place
                    && !j.within_any(allowed)
                {
                    out.push(RecordsOutside {
                        tenant: tenant.clone(),
                        written_in: *j,
                        records: *records,
                        allowed: allowed.to_vec(),
                    });
                }
            }
        }
        out
    }

    /// The residency report for `tenants`.
    #[must_use]
    pub fn report(&self, tenants: Vec<TenantResidency>) -> ResidencyReport {
        let violations = self.violations(&tenants);
        ResidencyReport {
            compliant: violations.is_empty(),
            node_jurisdiction: self.node,
            node_allowed: self.allowed.clone(),
            stores: self.stores.clone(),
            tenants,
            violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jurisdiction {
        s.parse().unwrap()
    }

    fn tenant(name: &str, allowed: &str) -> TenantResidency {
        TenantResidency {
            tenant: name.into(),
            allowed: Jurisdiction::parse_list(allowed).unwrap(),
        }
    }

    #[test]
    fn records_written_outside_a_tenants_jurisdictions_are_counted_and_older_ones_are_not() {
        let written_in: BTreeMap<String, BTreeMap<Option<Jurisdiction>, u64>> = [
            (
                "de-only",
                vec![(Some(j("DE")), 5), (Some(j("FR")), 2), (None, 9)],
            ),
            (
                "eu",
                vec![(Some(j("DE")), 1), (Some(j("EU")), 1), (Some(j("US")), 3)],
            ),
            ("unlisted", vec![(Some(j("CH")), 4), (Some(j("AT")), 1)]),
        ]
        .into_iter()
        .map(|(t, p)| (t.to_owned(), p.into_iter().collect()))
        .collect();
        let tenants = [tenant("de-only", "DE"), tenant("eu", "EU")];
        let outside = eu_node().records_outside(&written_in, &tenants);
        let found: Vec<_> = outside
            .iter()
            .map(|o| (o.tenant.as_str(), o.written_in.to_string(), o.records))
            .collect();
        assert_eq!(
            found,
            [
                ("de-only", "FR".to_owned(), 2),
                ("eu", "US".to_owned(), 3),
                // not in the access file: held to the node's EU
                ("unlisted", "CH".to_owned(), 4),
            ]
        );
        assert_eq!(outside[0].allowed, [j("DE")]);
    }

    fn eu_node() -> Residency {
        Residency::new(Jurisdiction::EU, vec![])
            .with_store("log", "fjall", "/d/log", Jurisdiction::EU)
            .with_store("keys", "files", "/k", Jurisdiction::EU)
    }

    #[test]
    fn jurisdictions_parse_case_insensitively_and_print_in_capitals() {
        assert_eq!(j("eu"), Jurisdiction::EU);
        assert_eq!(j(" de ").to_string(), "DE");
        for bad in ["", "E", "DEU", "D1", "europe", "日本"] {
            assert!(bad.parse::<Jurisdiction>().is_err(), "{bad:?}");
        }
        // Only two capitals make one, so every value fits a record.
        for bad in [*b"de", *b"D1", *b"\0\0", [b'D', 0xC3]] {
            assert_eq!(Jurisdiction::from_code(bad), None, "{bad:?}");
        }
        assert_eq!(Jurisdiction::from_code(*b"EU"), Some(Jurisdiction::EU));
        assert_eq!(
            Jurisdiction::from_code(*b"DE").map(|j| j.code()),
            Some(*b"DE")
        );
        assert_eq!(
            Jurisdiction::parse_list("DE, fr,,DE").unwrap(),
            vec![j("DE"), j("FR")]
        );
        assert_eq!(
            Jurisdiction::parse_list(" , "),
            Err(ResidencyError::EmptyList)
        );
        let json = serde_json::to_string(&vec![j("EU"), j("se")]).unwrap();
        assert_eq!(json, r#"["EU","SE"]"#);
        let back: Vec<Jurisdiction> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![j("EU"), j("SE")]);
        assert!(serde_json::from_str::<Jurisdiction>(r#""mars""#).is_err());
    }

    #[test]
    fn a_member_state_is_within_the_eu_but_the_eu_is_not_within_a_member_state() {
        for m in EU_MEMBERS {
            assert!(j(m).within(Jurisdiction::EU), "{m}");
        }
        assert!(!Jurisdiction::EU.within(j("DE")));
        for outside in ["US", "GB", "CH", "NO", "EL"] {
            assert!(!j(outside).within(Jurisdiction::EU), "{outside}");
        }
        assert!(j("DE").within(j("DE")));
        assert!(!j("DE").within(j("FR")));
    }

    #[test]
    fn the_default_eu_node_with_eu_stores_is_compliant() {
        let r = eu_node();
        assert_eq!(r.allowed(), &[Jurisdiction::EU]);
        r.check(&[tenant("default", "EU")]).unwrap();
        let report = r.report(vec![tenant("default", "EU")]);
        assert!(report.compliant);
        assert!(report.violations.is_empty());
    }

    #[test]
    fn a_store_outside_the_nodes_allowed_jurisdictions_is_refused_by_name() {
        let r = eu_node().with_store("projections", "fjall", "/p", j("US"));
        let Err(ResidencyError::Violated(v)) = r.check(&[]) else {
            panic!("a US store passed an EU node");
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "store projections");
        assert_eq!(v[0].outside_of, "node");
        let msg = ResidencyError::Violated(v).to_string();
        assert!(msg.contains("store projections is in US"), "{msg}");
    }

    #[test]
    fn a_tenant_that_allows_less_than_the_node_declares_is_refused() {
        // The node says only "EU": that does not prove Germany.
        let r = eu_node();
        let v = r.violations(&[tenant("acme", "DE")]);
        let subjects: Vec<_> = v.iter().map(|v| v.subject.as_str()).collect();
        assert_eq!(subjects, ["node", "store log", "store keys"]);
        assert!(v.iter().all(|v| v.outside_of == "tenant acme"));
        assert!(!r.permits(&[j("DE")]));
        assert!(r.permits(&[j("EU")]));
        // Declared in Germany, the same node serves it.
        let de = Residency::new(j("DE"), vec![j("EU")])
            .with_store("log", "fjall", "/d/log", j("DE"))
            .with_store("keys", "files", "/k", j("DE"));
        de.check(&[tenant("acme", "DE"), tenant("default", "EU")])
            .unwrap();
    }

    #[test]
    fn a_new_tenant_allows_what_the_node_allows_unless_told_and_only_what_it_can_serve() {
        let r = eu_node();
        assert_eq!(r.new_tenant(None).unwrap(), vec![Jurisdiction::EU]);
        assert_eq!(r.new_tenant(Some(vec![])), Err(ResidencyError::EmptyList));
        let Err(ResidencyError::Violated(v)) = r.new_tenant(Some(vec![j("DE")])) else {
            panic!("an EU node accepted a German-only tenant");
        };
        let subjects: Vec<_> = v.iter().map(|v| v.subject.as_str()).collect();
        assert_eq!(subjects, ["node", "store log", "store keys"]);
        assert!(v.iter().all(|v| v.outside_of == "the new tenant"));
        let de = Residency::new(j("DE"), vec![]).with_store("log", "fjall", "/d", j("DE"));
        assert_eq!(
            de.new_tenant(Some(vec![j("DE"), j("FR")])).unwrap(),
            vec![j("DE"), j("FR")]
        );
    }

    #[test]
    fn a_node_outside_its_own_allowed_list_is_refused() {
        let r = Residency::new(j("US"), vec![Jurisdiction::EU]);
        let v = r.violations(&[]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "node");
        assert!(!r.report(vec![]).compliant);
    }
}
