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

/// The body of `GET /` now, which must be a 200.
fn body(p: &Platform, app: &str) -> String {
    match p.http_get(app, "/") {
        Ok((200, body)) => body,
        other => panic!("{app} does not answer 200: {other:?}"),
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

// --- nodejs -------------------------------------------------------------------------------------

/// A lockfile for a production dependency (is-number) and a dev dependency (ms), as npm 9 wrote it.
const NODE_LOCK: &str = r#"{
  "name": "caas-test-node",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "caas-test-node",
      "version": "1.0.0",
      "dependencies": {
        "is-number": "7.0.0"
      },
      "devDependencies": {
        "ms": "2.1.3"
      }
    },
    "node_modules/is-number": {
      "version": "7.0.0",
      "resolved": "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      "license": "MIT",
      "engines": {
        "node": ">=0.12.0"
      }
    },
    "node_modules/ms": {
      "version": "2.1.3",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
      "dev": true,
      "license": "MIT"
    }
  }
}
"#;

/// Answers with what the install left behind: the file a postinstall script wrote, and whether
/// the dev dependency is installed.
const NODE_SERVER: &str = r#"const fs = require("fs");
const http = require("http");
function generated() {
  try { return fs.readFileSync("generated.txt", "utf8").trim(); } catch (e) { return "nothing generated"; }
}
function ms() {
  // The app's own node_modules: Debian's node also resolves modules from /usr/share/nodejs.
  return fs.existsSync("node_modules/ms/package.json") ? "ms installed" : "ms not installed";
}
http.createServer((req, res) => res.end(`${generated()}; ${ms()}\n`)).listen(Number(process.env.PORT));
"#;

/// package.json with `scripts` (a JSON object's inside) and the lockfile's dependencies.
fn package_json(scripts: &str) -> String {
    format!(
        r#"{{
  "name": "caas-test-node",
  "version": "1.0.0",
  "private": true,
  "scripts": {{ {scripts} }},
  "dependencies": {{ "is-number": "7.0.0" }},
  "devDependencies": {{ "ms": "2.1.3" }}
}}
"#
    )
}

#[test]
fn a_nodejs_rebuild_runs_a_changed_postinstall_script_with_the_lockfile_unchanged() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "postinstall"]);
    let app = caas_e2e::temp_dir_with(&[
        ("package-lock.json", NODE_LOCK),
        ("server.js", NODE_SERVER),
        (
            "make.js",
            "require('fs').writeFileSync('generated.txt', 'made by postinstall ' + process.argv[2] + '\\n');\n",
        ),
    ]);
    let dir = app.path();
    let scripts = |word: &str| {
        package_json(&format!(
            r#""start": "node server.js", "postinstall": "node make.js {word}""#
        ))
    };
    write(dir, "package.json", &scripts("one"));
    push(&p, "postinstall", dir);
    assert!(body(&p, "postinstall").contains("made by postinstall one"));

    // Only the postinstall script changes: package-lock.json is the same file.
    write(dir, "package.json", &scripts("two"));
    let out = push(&p, "postinstall", dir);
    let got = body(&p, "postinstall");
    assert!(
        got.contains("made by postinstall two"),
        "the second push's postinstall ran: {got}\n{out}"
    );
    assert!(
        !out.contains("Reusing node_modules"),
        "package.json changed: {out}"
    );

    // Unchanged: the app's own install script still runs (what it makes is not in node_modules).
    let out = push(&p, "postinstall", dir);
    let got = body(&p, "postinstall");
    assert!(
        got.contains("made by postinstall two"),
        "an unchanged rebuild runs postinstall too: {got}\n{out}"
    );
}

#[test]
fn a_nodejs_rebuild_applies_a_changed_npm_config_var_and_reuses_node_modules_otherwise() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "npmconfig"]);
    let app = caas_e2e::temp_dir_with(&[
        ("package-lock.json", NODE_LOCK),
        ("server.js", NODE_SERVER),
        (
            "package.json",
            &package_json(r#""start": "node server.js""#),
        ),
    ]);
    let first = push(&p, "npmconfig", app.path());
    assert!(
        body(&p, "npmconfig").contains("ms not installed"),
        "{first}"
    );

    // Nothing changed: node_modules is reused as it is.
    let out = push(&p, "npmconfig", app.path());
    assert!(
        out.contains("Reusing node_modules from the last build"),
        "{out}"
    );
    assert!(body(&p, "npmconfig").contains("ms not installed"));

    // A config var npm reads changes what `npm ci` installs: the rebuild installs again.
    p.caas_ok(&["config:set", "NPM_CONFIG_INCLUDE=dev", "-a", "npmconfig"]);
    let out = push(&p, "npmconfig", app.path());
    let got = body(&p, "npmconfig");
    assert!(got.contains("ms installed"), "{got}\n{out}");
    assert!(!out.contains("Reusing node_modules"), "{out}");
    assert!(out.contains("config vars"), "it says what changed: {out}");

    for out in [first, out] {
        assert_sizes_follow_the_convention(&out);
    }
}

// --- python -------------------------------------------------------------------------------------

const PY_APP: &str = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import six
    WHAT = "six %s" % six.__version__
except ImportError:
    WHAT = "no six"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("python app: %s\n" % WHAT).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn a_python_rebuild_does_not_reuse_a_virtualenv_made_from_other_requirements_or_pip_config() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "pyreqs"]);
    let app = caas_e2e::temp_dir_with(&[
        ("app.py", PY_APP),
        ("requirements.txt", "-r requirements/base.txt\n"),
        ("requirements/base.txt", "six==1.16.0\n"),
    ]);
    let dir = app.path();
    let first = push(&p, "pyreqs", dir);
    assert!(
        body(&p, "pyreqs").contains("python app: six 1.16.0"),
        "{first}"
    );

    let out = push(&p, "pyreqs", dir);
    assert!(
        out.contains("Restoring the virtualenv from the cache"),
        "nothing changed, the cached virtualenv is reused: {out}"
    );

    // requirements.txt is the same file; what it includes no longer asks for six.
    write(dir, "requirements/base.txt", "# nothing any more\n");
    let out = push(&p, "pyreqs", dir);
    let got = body(&p, "pyreqs");
    assert!(
        got.contains("python app: no six"),
        "a package no longer required is gone: {got}\n{out}"
    );

    // A pip config var changes how pip installs: no reuse either.
    p.caas_ok(&["config:set", "PIP_NO_COMPILE=1", "-a", "pyreqs"]);
    let out = push(&p, "pyreqs", dir);
    assert!(!out.contains("Restoring the virtualenv"), "{out}");
    assert!(out.contains("PIP_"), "it says what changed: {out}");

    for out in [first, out] {
        assert_sizes_follow_the_convention(&out);
    }
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

// --- jvm-jar ------------------------------------------------------------------------------------

#[test]
fn a_jar_without_main_class_is_told_about_the_jar_not_about_procfiles() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "plainjar"]);
    // A library jar: a manifest, a class file, no Main-Class.
    let tmp = tempfile::tempdir().unwrap();
    let jar = tmp.path().join("lib.jar");
    let out = caas_e2e::run(
        std::process::Command::new("python3").arg("-c").arg(
            "import sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1], 'w')\n\
             z.writestr('META-INF/MANIFEST.MF', 'Manifest-Version: 1.0\\r\\nCreated-By: test\\r\\n\\r\\n')\n\
             z.writestr('com/example/Lib.class', b'\\xca\\xfe\\xba\\xbe\\x00\\x00\\x00\\x3d')\n\
             z.close()",
        )
        .arg(&jar),
        None,
        WAIT,
    );
    assert!(out.success(), "{out}");
    let out = p.caas(&["push", jar.to_str().unwrap(), "-a", "plainjar"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(
            " !     lib.jar has no Main-Class in its manifest, so there is no telling how to run it"
        ),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("web: java -cp lib.jar com.example.Main"),
        "it says how to fix it: {out}"
    );
    assert!(!out.stderr.contains("no buildpack detected"), "{out}");
}
