//! The bundled buildpacks' own behaviour, seen as a user sees it: what a rebuild reuses from the
//! app's build cache (and what it must not), what the static buildpack serves, and the figures
//! buildpacks print. Real builds in the stack image, answers through the gateway.

use caas_e2e::{docker, Platform};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const STACK: &str = "caas/stack:latest";

/// Builds need the stack image; say how to get it instead of failing obscurely.
fn require_stack() {
    caas_e2e::require_docker();
    if !docker(&["image", "inspect", STACK]).success() {
        panic!("the stack image {STACK} is missing: build it with stack/build.sh (install.sh and .ci/run do)");
    }
}

/// `caas push DIR -a APP`; the push waits until the release is up. Its output.
fn push(p: &Platform, app: &str, dir: &Path) -> String {
    p.caas_ok(&["push", dir.to_str().unwrap(), "-a", app])
}

// --- static -------------------------------------------------------------------------------------

#[test]
fn the_static_buildpack_serves_no_dotfiles_unless_the_app_allows_them() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "site"]);
    let css = "body { color: #333; }\n".repeat(70); // 1540 bytes
    let app = caas_e2e::temp_dir_with(&[
        ("index.html", "<h1>dotfiles test</h1>\n"),
        ("assets/app.css", &css),
        ("assets/.secret", "nested secret\n"),
        ("assets/.DS_Store", "finder litter\n"),
        (".env", "DATABASE_URL=postgres://user:secret@db/app\n"),
        (".gitignore", "*.log\n"),
        (".caasignore", "notes.txt\n"),
        ("notes.txt", "not shipped\n"),
        ("debug.log", "not shipped either\n"),
        (
            ".well-known/security.txt",
            "Contact: mailto:security@example.com\n",
        ),
    ]);
    let out = push(&p, "site", app.path());

    let status = |path: &str| p.http_get("site", path).unwrap().0;
    let (code, got) = p.http_get("site", "/index.html").unwrap();
    assert_eq!(code, 200, "{got}");
    assert!(got.contains("dotfiles test"));
    assert_eq!(status("/"), 200);
    assert_eq!(status("/assets/app.css"), 200);
    // RFC 8615's well-known folder is meant to be public.
    assert_eq!(status("/.well-known/security.txt"), 200);
    for hidden in [
        "/.env",
        "/.gitignore",
        "/.caasignore",
        "/assets/.secret",
        "/.profile.d/static.sh",
        "/.caas/buildpack",
        "/notes.txt",
    ] {
        let (code, got) = p.http_get("site", hidden).unwrap();
        assert!(
            code == 404 || code == 403,
            "{hidden} answered {code}: {got}"
        );
    }

    // The figures are what is served: index.html (23 B), app.css (1540 B), security.txt (37 B).
    assert!(
        out.contains("Serving 3 files, 1.6 KB"),
        "the served files, counted and sized as caas does everywhere: {out}"
    );
    assert!(
        out.contains("not served: .caasignore, .env, .gitignore, assets/.DS_Store, assets/.secret"),
        "{out}"
    );
    assert_sizes_follow_the_convention(&out);

    // The opt-in takes effect with the restart of config:set, no rebuild.
    p.caas_ok(&["config:set", "STATIC_DOTFILES=allow", "-a", "site"]);
    p.wait_for(
        WAIT,
        "/.env to be served after STATIC_DOTFILES=allow",
        || (status("/.env") == 200).then_some(()),
    );
    assert_eq!(status("/assets/.secret"), 200);
    assert_eq!(status("/index.html"), 200);
    // The platform's own folders are not the app's dotfiles.
    assert_eq!(status("/.caas/buildpack"), 404);
    assert_eq!(status("/.profile.d/static.sh"), 404);
}

// --- output -------------------------------------------------------------------------------------

/// Every size a buildpack prints follows `caas_api::format_bytes`: whole bytes with `B`, else one
/// decimal with `KB`, `MB` or `GB` (powers of 1024); never KiB/MiB/GiB or a whole `MB`. (pip's
/// own download lines say `kB`; they are pip's, passed through.)
fn assert_sizes_follow_the_convention(out: &str) {
    let words: Vec<&str> = out
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ','))
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let (number, unit) = (pair[0], pair[1]);
        if !number.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let good = match unit {
            "B" => digits(number),
            "KB" | "MB" | "GB" => number
                .split_once('.')
                .is_some_and(|(whole, tenth)| digits(whole) && tenth.len() == 1 && digits(tenth)),
            "KiB" | "MiB" | "GiB" => false,
            _ => true,
        };
        assert!(
            good,
            "\"{number} {unit}\" is not caas's size format in:\n{out}"
        );
    }
}
