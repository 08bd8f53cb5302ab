//! How failed sign-ins are limited, per account and per client address:
//! a few failures are free, then each further attempt waits twice as long
//! as the one before (from the last failure, up to a cap), and after many
//! the key is locked for a while. Quiet for a window, a key starts over.
//!
//! The account's key is the email as typed (normalised), whether or not an
//! account has it, so a limited answer says nothing about which emails
//! exist. A success clears the account's failures, not the address's: one
//! valid account must not let an address guess at the others.

use chrono::{DateTime, Duration, Utc};

/// The limits of one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// Failures answered at once.
    pub free: u32,
    /// Failures after which the key is locked.
    pub lock_after: u32,
    /// The longest wait between two attempts before the lock.
    pub max_delay: Duration,
    /// How long a lock lasts (each failure while locked starts it again).
    pub lock_for: Duration,
    /// Failures this long after the last one start over.
    pub window: Duration,
}

/// Per account (the email tried): 5 free failures, then 1 s, 2 s, 4 s ...
/// up to 5 minutes between attempts, locked for 15 minutes after 20.
pub const PER_ACCOUNT: AttemptLimits = AttemptLimits {
    free: 5,
    lock_after: 20,
    max_delay: Duration::minutes(5),
    lock_for: Duration::minutes(15),
    window: Duration::hours(1),
};

/// Per client address: more room, since an office shares one address.
pub const PER_ADDRESS: AttemptLimits = AttemptLimits {
    free: 30,
    lock_after: 200,
    max_delay: Duration::minutes(1),
    lock_for: Duration::minutes(15),
    window: Duration::hours(1),
};

/// The failures of one key so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    pub failures: u32,
    pub last_failure: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

/// What the next attempt meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Checked now.
    Allowed,
    /// Refused until then (a growing delay, or a lock), without checking
    /// the password.
    Wait { until: DateTime<Utc>, locked: bool },
}

/// What one more failure changed, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// Still within the free failures, or already delayed.
    None,
    /// This failure starts the delays.
    Delayed,
    /// This failure locks the key.
    Locked,
}

impl AttemptLimits {
    /// The failures that still count at `now` (none after a quiet window).
    fn current<'a>(
        &self,
        attempts: Option<&'a Attempts>,
        now: DateTime<Utc>,
    ) -> Option<&'a Attempts> {
        attempts.filter(|a| {
            now - a.last_failure < self.window || a.locked_until.is_some_and(|t| t > now)
        })
    }

    /// The wait after `failures` failures (zero while they are free).
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::zero();
        }
        let doublings = (failures - self.free).min(30);
        Duration::seconds(1i64 << doublings).min(self.max_delay)
    }

    /// What an attempt at `now` meets.
    pub fn verdict(&self, attempts: Option<&Attempts>, now: DateTime<Utc>) -> Verdict {
        let Some(a) = self.current(attempts, now) else {
            return Verdict::Allowed;
        };
        if let Some(until) = a.locked_until.filter(|t| *t > now) {
            return Verdict::Wait {
                until,
                locked: true,
            };
        }
        let until = a.last_failure + self.delay_after(a.failures);
        if until > now {
            Verdict::Wait {
                until,
                locked: false,
            }
        } else {
            Verdict::Allowed
        }
    }

    /// The record after one more failure at `now`, and what it changed.
    pub fn after_failure(
        &self,
        attempts: Option<&Attempts>,
        now: DateTime<Utc>,
    ) -> (Attempts, Escalation) {
        let failures = self.current(attempts, now).map_or(0, |a| a.failures) + 1;
        let escalation = if failures == self.lock_after {
            Escalation::Locked
        } else if failures == self.free {
            Escalation::Delayed
        } else {
            Escalation::None
        };
        let locked_until = (failures >= self.lock_after).then(|| now + self.lock_for);
        (
            Attempts {
                failures,
                last_failure: now,
                locked_until,
            },
            escalation,
        )
    }
}

/// The stricter of two verdicts (the later wait).
pub fn stricter(a: Verdict, b: Verdict) -> Verdict {
    match (a, b) {
        (Verdict::Allowed, v) | (v, Verdict::Allowed) => v,
        (Verdict::Wait { until: x, .. }, Verdict::Wait { until: y, .. }) => {
            if x >= y {
                a
            } else {
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn fail(limits: &AttemptLimits, times: u32, now: DateTime<Utc>) -> (Attempts, Escalation) {
        let mut record: Option<Attempts> = None;
        let mut last = Escalation::None;
        for _ in 0..times {
            let (a, e) = limits.after_failure(record.as_ref(), now);
            record = Some(a);
            last = e;
        }
        (record.expect("failed"), last)
    }

    #[test]
    fn a_few_failures_are_free_then_waits_double() {
        let l = PER_ACCOUNT;
        let (four, e) = fail(&l, 4, at(0));
        assert_eq!(e, Escalation::None);
        assert_eq!(l.verdict(Some(&four), at(0)), Verdict::Allowed);
        let (five, e) = fail(&l, 5, at(0));
        assert_eq!(e, Escalation::Delayed);
        assert_eq!(
            l.verdict(Some(&five), at(0)),
            Verdict::Wait {
                until: at(1),
                locked: false
            }
        );
        assert_eq!(l.verdict(Some(&five), at(1)), Verdict::Allowed);
        let (seven, _) = fail(&l, 7, at(0));
        assert_eq!(
            l.verdict(Some(&seven), at(3)),
            Verdict::Wait {
                until: at(4),
                locked: false
            }
        );
        // The delay stops growing at its cap.
        let (nineteen, _) = fail(&l, 19, at(0));
        assert_eq!(
            l.verdict(Some(&nineteen), at(0)),
            Verdict::Wait {
                until: at(300),
                locked: false
            }
        );
    }

    #[test]
    fn many_failures_lock_and_a_quiet_window_starts_over() {
        let l = PER_ACCOUNT;
        let (locked, e) = fail(&l, 20, at(0));
        assert_eq!(e, Escalation::Locked);
        assert_eq!(
            l.verdict(Some(&locked), at(60)),
            Verdict::Wait {
                until: at(900),
                locked: true
            }
        );
        // Failing again while locked keeps it locked, and escalates no more.
        let (again, e) = l.after_failure(Some(&locked), at(950));
        assert_eq!(e, Escalation::None);
        assert_eq!(again.locked_until, Some(at(950 + 900)));
        // An hour after the last failure, and out of the lock: free again.
        assert_eq!(l.verdict(Some(&locked), at(3600)), Verdict::Allowed);
        let (fresh, _) = l.after_failure(Some(&locked), at(3600));
        assert_eq!(fresh.failures, 1);
    }

    #[test]
    fn the_later_wait_wins() {
        let a = Verdict::Wait {
            until: at(5),
            locked: false,
        };
        let b = Verdict::Wait {
            until: at(9),
            locked: true,
        };
        assert_eq!(stricter(a, b), b);
        assert_eq!(stricter(Verdict::Allowed, a), a);
        assert_eq!(stricter(b, Verdict::Allowed), b);
    }
}
