//! Time triggers of workflows (not playout schedules): a cron line (`minute hour day-of-month month day-of-week`, in UTC) or an
//! interval (`every 30s`, `every 15m`, `every 6h`). Each firing has a number (the minute, or
//! the interval since the epoch) that goes into the idempotency keys of the jobs it queues, so
//! that a restart or a second appliance on the same catalog does not run it twice.
//! Pure: imports nothing of the crate, no tokio, SQL or libav.

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(u64),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_any: bool,
    weekdays_any: bool,
}

fn field(text: &str, lo: u32, hi: u32, what: &str) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; hi as usize + 1];
    let any = text == "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: step {s:?} is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{what}: {s:?} is not a number from {lo} to {hi}"))
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let a = num(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("{what}: {range:?} runs backwards"));
        }
        for v in (a..=b).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    Ok((set, any))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            let rest = rest.trim();
            let (n, unit) = rest.split_at(
                rest.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len()),
            );
            let n: u64 =
                n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("{t:?}: `every` takes a positive number and s, m or h")
                })?;
            let secs = match unit.trim() {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                u => return Err(format!("{t:?}: unit {u:?} is not s, m or h")),
            };
            return Ok(Schedule::Every(secs));
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "{t:?}: a schedule is `every 15m` or five cron fields (minute hour day month weekday, UTC)"
            ));
        }
        let (minutes, _) = field(f[0], 0, 59, "minute")?;
        let (hours, _) = field(f[1], 0, 23, "hour")?;
        let (days, days_any) = field(f[2], 1, 31, "day of month")?;
        let (months, _) = field(f[3], 1, 12, "month")?;
        let (mut weekdays, weekdays_any) = field(f[4], 0, 7, "day of week")?;
        // 7 is Sunday too.
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Schedule::Cron(Box::new(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })))
    }

    /// The first firing after `now` (unix seconds): when, and its number.
    pub fn next_after(&self, now: i64) -> Option<(i64, i64)> {
        match self {
            Schedule::Every(s) => {
                let s = *s as i64;
                let n = now.div_euclid(s) + 1;
                Some((n * s, n))
            }
            Schedule::Cron(c) => {
                // Four years of minutes: every line that can fire (29 February too) does.
                let first = now.div_euclid(60) + 1;
                (first..first + 4 * 366 * 24 * 60).find_map(|m| {
                    let t = OffsetDateTime::from_unix_timestamp(m * 60).ok()?;
                    c.matches(&t).then_some((m * 60, m))
                })
            }
        }
    }
}

impl Cron {
    fn matches(&self, t: &OffsetDateTime) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().number_days_from_sunday() as usize];
        // As cron: with both day fields restricted, either one matching will do.
        let day = match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        };
        self.minutes[t.minute() as usize]
            && self.hours[t.hour() as usize]
            && self.months[u8::from(t.month()) as usize]
            && day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn cron_lines_fire_when_cron_would() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let (t, _) = s.next_after(at("2026-11-29T12:00:00Z")).unwrap();
        assert_eq!(t, at("2026-11-30T02:30:00Z"));
        // Weekdays at 06:00: Friday 27 November 2026 → Monday.
        let s = Schedule::parse("0 6 * * 1-5").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-27T07:00:00Z")).unwrap().0,
            at("2026-11-30T06:00:00Z")
        );
        // Every 15 minutes; Sunday as 7.
        let s = Schedule::parse("*/15 * * * 7").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-29T10:07:00Z")).unwrap().0,
            at("2026-11-29T10:15:00Z")
        );
        // Day of month or day of week, as cron.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-29T00:00:00Z")).unwrap().0,
            at("2026-11-30T00:00:00Z")
        );
        // 29 February.
        let s = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-29T00:00:00Z")).unwrap().0,
            at("2028-02-29T00:00:00Z")
        );
        assert!(Schedule::parse("0 0 31 2 *")
            .unwrap()
            .next_after(0)
            .is_none());
    }

    #[test]
    fn intervals_and_their_numbers() {
        let s = Schedule::parse("every 10s").unwrap();
        assert_eq!(s.next_after(95), Some((100, 10)));
        assert_eq!(s.next_after(100), Some((110, 11)));
        assert_eq!(Schedule::parse("every 2h").unwrap(), Schedule::Every(7200));
    }

    #[test]
    fn refuses_what_is_not_a_schedule() {
        for (t, why) in [
            ("every", "five cron fields"),
            ("every 0s", "positive"),
            ("every 5d", "unit"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("* * * *", "five cron fields"),
        ] {
            let e = Schedule::parse(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
