//! What `drvmeta --version` says: the version, the git commit built from
//! and whether the tree was dirty (recorded by `build.rs` with `built`).

mod built_info {
    include!(concat!(env!("OUT_DIR"), "/built.rs"));
}

/// `0.1.0 (commit <hash>, clean tree)`, `…, dirty tree)`, or `(commit
/// unknown: built outside a git checkout)`.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let commit = built_info::GIT_COMMIT_HASH.or(option_env!("DRVMETA_GIT_COMMIT"));
        let source = match (commit, built_info::GIT_DIRTY) {
            (Some(commit), Some(true)) => format!("commit {commit}, dirty tree"),
            (Some(commit), Some(false)) => format!("commit {commit}, clean tree"),
            (Some(commit), None) => format!("commit {commit}"),
            (None, _) => "commit unknown: built outside a git checkout".to_owned(),
        };
        format!("{} ({source})", built_info::PKG_VERSION)
    })
}
