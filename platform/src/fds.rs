//! The process's open-file limit: servers hold one descriptor per connection.

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and log both; returns the soft limit
/// now in force. A failure is logged and leaves the limit as it was.
pub fn raise_nofile_limit() -> Option<u64> {
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) => {
            tracing::info!(
                before = soft,
                soft = now,
                hard,
                "open-file limit (RLIMIT_NOFILE)"
            );
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit; it stays at {soft}");
            Some(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise_nofile_limit().expect("limit");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read");
        assert_eq!(now, soft);
        // macOS caps the soft limit below an unlimited hard one; Linux gives the hard one.
        if cfg!(target_os = "linux") {
            assert_eq!(soft, hard);
        }
    }
}
