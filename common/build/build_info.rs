// The build script of both programs (`router/build.rs` and
// `binlog-reader/build.rs` are `include!` of this file): tells the crate
// which commit and profile it is built from, for `--version` and the
// `build_info` gauge (see `causeway_common::build_info`).
//
// - CAUSEWAY_GIT_COMMIT: the commit's short hash; `CAUSEWAY_GIT_COMMIT` in
//   the environment wins (a build from a tarball that knows its commit);
//   "unknown" when there is no git or no repository.
// - CAUSEWAY_BUILD_PROFILE: cargo's PROFILE ("debug" or "release").
//
// It reruns only when HEAD moves: git's HEAD file and the one file that
// holds the branch's commit (its loose ref, or packed-refs), never the
// whole repository, so a new commit rebuilds the two programs and nothing
// else, and another worktree's commits rebuild nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn git_path(name: &str) -> Option<PathBuf> {
    git(&["rev-parse", "--path-format=absolute", "--git-path", name]).map(PathBuf::from)
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn main() {
    println!("cargo:rerun-if-env-changed=CAUSEWAY_GIT_COMMIT");
    let from_env = std::env::var("CAUSEWAY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let commit = match from_env {
        Some(c) => c.trim().to_string(),
        None => {
            if let Some(head) = git_path("HEAD").filter(|p| p.exists()) {
                watch(&head);
                // A branch: its loose ref when there is one; else it is in
                // packed-refs, and the next commit creates the loose ref in
                // its folder.
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    match git_path(&branch) {
                        Some(loose) if loose.exists() => watch(&loose),
                        Some(loose) => {
                            if let Some(dir) = loose.parent().filter(|d| d.exists()) {
                                watch(dir);
                            }
                            if let Some(packed) = git_path("packed-refs").filter(|p| p.exists()) {
                                watch(&packed);
                            }
                        }
                        None => {}
                    }
                }
            } else {
                // No repository: nothing to watch but this script (cargo's
                // default would rerun it on any change in the package).
                println!("cargo:rerun-if-changed=build.rs");
            }
            git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=CAUSEWAY_GIT_COMMIT={commit}");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=CAUSEWAY_BUILD_PROFILE={profile}");
}
