//! What the ACME client does next, as data: which names need a certificate now, which cannot
//! have one, which order records no longer belong to anything. No I/O, no clock (`now` is an
//! input); `mod.rs` carries the steps out.

use crate::store::{AcmeOrderRecord, CertRecord};
use caas_api::domains::AcmeState;
use caas_api::Timestamp;
use std::time::Duration;

/// A certificate is renewed this long before it expires (or at two thirds of its life, for one
/// that lives less than 90 days).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// After the first failed order, the next try waits this long; it doubles with every failure
/// after that, up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
pub const MAX_RETRY: Duration = Duration::from_secs(24 * 3600);

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the ACME server for a certificate for `hostname`, one of `app`'s domains.
    Obtain { app: String, hostname: String },
    /// Record that `hostname` cannot have one this way (a wildcard needs DNS-01, and no
    /// `--acme-dns-hook` was given).
    Unsupported { app: String, hostname: String },
    /// Forget the order record of a name no app with `certs:auto on` has any more.
    Forget { hostname: String },
}

/// How long to wait before trying a name again after `failures` failed orders in a row.
pub fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// When `cert` falls due for renewal.
pub fn renew_at(cert: &CertRecord) -> Timestamp {
    let life = cert.not_before.until(cert.not_after);
    let before = RENEW_BEFORE.min(life / 3).as_millis() as u64;
    Timestamp(cert.not_after.0.saturating_sub(before))
}

/// Whether `cert` is due for renewal at `now`.
pub fn due(cert: &CertRecord, now: Timestamp) -> bool {
    now >= renew_at(cert)
}

/// The next moment after `now` that something falls due without any change: a renewal, or a
/// failed order's next try. The client wakes then rather than on its next periodic look, so a
/// short-lived certificate is renewed on time.
pub fn next_due(
    orders: &[AcmeOrderRecord],
    certs: &[CertRecord],
    now: Timestamp,
) -> Option<Timestamp> {
    orders
        .iter()
        .filter_map(|o| match o.state {
            AcmeState::Failed => o.next_try,
            AcmeState::Valid => certs
                .iter()
                .find(|c| {
                    c.app.as_deref() == Some(o.app.as_str()) && Some(&c.id) == o.cert_id.as_ref()
                })
                .map(renew_at),
            AcmeState::Pending | AcmeState::Unsupported => None,
        })
        .filter(|t| *t > now)
        .min()
}

/// The steps for `wanted` (`(app, hostname)`: every domain of every app with `certs:auto on`),
/// given the order records and the certificates in the store. `dns01` says whether wildcards can
/// be proved (the operator gave a DNS-01 hook).
pub fn plan(
    wanted: &[(String, String)],
    orders: &[AcmeOrderRecord],
    certs: &[CertRecord],
    now: Timestamp,
    dns01: bool,
) -> Vec<Step> {
    let mut steps: Vec<Step> = orders
        .iter()
        .filter(|o| !wanted.iter().any(|(a, h)| *a == o.app && *h == o.hostname))
        .map(|o| Step::Forget {
            hostname: o.hostname.clone(),
        })
        .collect();
    for (app, hostname) in wanted {
        let order = orders
            .iter()
            .find(|o| o.app == *app && o.hostname == *hostname);
        let (app, hostname) = (app.clone(), hostname.clone());
        if hostname.starts_with("*.") && !dns01 {
            if order.map(|o| o.state) != Some(AcmeState::Unsupported) {
                steps.push(Step::Unsupported { app, hostname });
            }
            continue;
        }
        let obtain = match order {
            None => true,
            Some(o) => match o.state {
                AcmeState::Pending | AcmeState::Unsupported => true,
                AcmeState::Failed => o.next_try.is_none_or(|t| t <= now),
                AcmeState::Valid => {
                    let cert = certs.iter().find(|c| {
                        c.app.as_deref() == Some(app.as_str()) && Some(&c.id) == o.cert_id.as_ref()
                    });
                    cert.is_none_or(|c| due(c, now))
                }
            },
        };
        if obtain {
            steps.push(Step::Obtain { app, hostname });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::domains::CertSource;

    const DAY: u64 = 86_400_000;
    const NOW: Timestamp = Timestamp(1_000 * DAY);

    fn order(app: &str, host: &str, state: AcmeState) -> AcmeOrderRecord {
        AcmeOrderRecord {
            app: app.into(),
            hostname: host.into(),
            state,
            error: None,
            updated_at: Timestamp(NOW.0 - DAY),
            next_try: None,
            failures: 0,
            cert_id: None,
        }
    }

    fn cert(app: &str, id: &str, from: u64, until: u64) -> CertRecord {
        CertRecord {
            app: Some(app.into()),
            id: id.into(),
            names: vec![],
            issuer: String::new(),
            not_before: Timestamp(from),
            not_after: Timestamp(until),
            chain_pem: String::new(),
            key_pem: String::new(),
            source: CertSource::Auto,
            created_at: Timestamp(from),
            origin: String::new(),
        }
    }

    #[test]
    fn the_client_wakes_when_the_first_renewal_or_retry_falls_due() {
        let mut valid = order("a", "a.test", AcmeState::Valid);
        valid.cert_id = Some("c1".into());
        // A 6-day certificate issued a day ago: due two days before it ends, in three days.
        let short = cert("a", "c1", NOW.0 - DAY, NOW.0 + 5 * DAY);
        let mut failed = order("b", "b.test", AcmeState::Failed);
        failed.next_try = Some(Timestamp(NOW.0 + 2 * DAY));
        let mut past = order("c", "c.test", AcmeState::Failed);
        past.next_try = Some(Timestamp(NOW.0 - 1));
        let pending = order("d", "d.test", AcmeState::Pending);
        let certs = [short];
        for (orders, want) in [
            (vec![], None),
            (vec![pending.clone()], None),
            (vec![valid.clone()], Some(Timestamp(NOW.0 + 3 * DAY))),
            (
                vec![valid.clone(), failed.clone()],
                Some(Timestamp(NOW.0 + 2 * DAY)),
            ),
            // Already due: the plan acts on it now; nothing later to wake for.
            (vec![past], None),
        ] {
            assert_eq!(next_due(&orders, &certs, NOW), want, "{orders:?}");
        }
    }

    fn wanted(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, h)| (a.to_string(), h.to_string()))
            .collect()
    }

    fn obtain(app: &str, host: &str) -> Step {
        Step::Obtain {
            app: app.into(),
            hostname: host.into(),
        }
    }

    #[test]
    fn a_new_name_is_obtained_and_a_wildcard_is_unsupported_once() {
        let w = wanted(&[("a", "www.a.test"), ("a", "*.a.test")]);
        assert_eq!(
            plan(&w, &[], &[], NOW, false),
            [
                obtain("a", "www.a.test"),
                Step::Unsupported {
                    app: "a".into(),
                    hostname: "*.a.test".into()
                }
            ]
        );
        let orders = [order("a", "*.a.test", AcmeState::Unsupported)];
        assert_eq!(plan(&w[1..], &orders, &[], NOW, false), []);
    }

    #[test]
    fn with_a_dns01_hook_a_wildcard_is_obtained_even_after_it_was_unsupported() {
        let w = wanted(&[("a", "*.a.test")]);
        assert_eq!(plan(&w, &[], &[], NOW, true), [obtain("a", "*.a.test")]);
        let orders = [order("a", "*.a.test", AcmeState::Unsupported)];
        assert_eq!(plan(&w, &orders, &[], NOW, true), [obtain("a", "*.a.test")]);
    }

    #[test]
    fn pending_orders_are_resumed_and_failed_ones_wait_for_their_time() {
        let w = wanted(&[("a", "x.test")]);
        let pending = order("a", "x.test", AcmeState::Pending);
        assert_eq!(
            plan(&w, &[pending], &[], NOW, false),
            [obtain("a", "x.test")]
        );
        let mut failed = order("a", "x.test", AcmeState::Failed);
        failed.next_try = Some(Timestamp(NOW.0 + 1));
        assert_eq!(plan(&w, std::slice::from_ref(&failed), &[], NOW, false), []);
        failed.next_try = Some(NOW);
        assert_eq!(
            plan(&w, &[failed], &[], NOW, false),
            [obtain("a", "x.test")]
        );
    }

    #[test]
    fn a_valid_certificate_is_renewed_when_due_or_gone() {
        let w = wanted(&[("a", "x.test")]);
        let mut valid = order("a", "x.test", AcmeState::Valid);
        valid.cert_id = Some("c1".into());
        let orders = [valid];
        // 90-day certificate, 60 days left: nothing; 29 days left: renew.
        let fresh = cert("a", "c1", NOW.0 - 30 * DAY, NOW.0 + 60 * DAY);
        assert_eq!(plan(&w, &orders, &[fresh], NOW, false), []);
        let old = cert("a", "c1", NOW.0 - 61 * DAY, NOW.0 + 29 * DAY);
        assert_eq!(
            plan(&w, &orders, &[old], NOW, false),
            [obtain("a", "x.test")]
        );
        // A 6-day certificate is renewed with two days left, not before.
        let short = cert("a", "c1", NOW.0 - 3 * DAY, NOW.0 + 3 * DAY);
        assert_eq!(plan(&w, &orders, &[short], NOW, false), []);
        let short = cert("a", "c1", NOW.0 - 4 * DAY, NOW.0 + 2 * DAY);
        assert_eq!(
            plan(&w, &orders, &[short], NOW, false),
            [obtain("a", "x.test")]
        );
        // Removed (certs:remove), or another app's certificate with the same id: obtain.
        assert_eq!(plan(&w, &orders, &[], NOW, false), [obtain("a", "x.test")]);
        let other = cert("b", "c1", NOW.0, NOW.0 + 90 * DAY);
        assert_eq!(
            plan(&w, &orders, &[other], NOW, false),
            [obtain("a", "x.test")]
        );
    }

    #[test]
    fn orders_of_names_no_longer_wanted_are_forgotten() {
        let orders = [
            order("a", "gone.test", AcmeState::Valid),
            order("a", "moved.test", AcmeState::Failed),
        ];
        // moved.test now belongs to b (with certs:auto on): a's record goes, b's order starts.
        let w = wanted(&[("b", "moved.test")]);
        assert_eq!(
            plan(&w, &orders, &[], NOW, false),
            [
                Step::Forget {
                    hostname: "gone.test".into()
                },
                Step::Forget {
                    hostname: "moved.test".into()
                },
                obtain("b", "moved.test"),
            ]
        );
    }

    #[test]
    fn retries_back_off_from_five_minutes_to_a_day() {
        assert_eq!(retry_after(1), FIRST_RETRY);
        assert_eq!(retry_after(2), FIRST_RETRY * 2);
        assert_eq!(retry_after(4), FIRST_RETRY * 8);
        assert_eq!(retry_after(40), MAX_RETRY);
    }
}
