//! The page templates (askama, checked at compile time; `templates/`).

use askama::Template;

/// The navigation bar of a logged-in page.
#[derive(Debug)]
pub(crate) struct Nav {
    pub(crate) user: String,
    pub(crate) csrf: String,
    pub(crate) page: &'static str,
}

#[derive(Template, Debug)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) nav: Option<Nav>,
    pub(crate) csrf: String,
    pub(crate) user: String,
    pub(crate) error: Option<String>,
}

#[derive(Template, Debug)]
#[template(path = "settings.html")]
pub(crate) struct SettingsPage {
    pub(crate) nav: Option<Nav>,
    pub(crate) csrf: String,
    pub(crate) saved: bool,
    pub(crate) spam_scanning: bool,
    pub(crate) subject_prefix: bool,
    pub(crate) folder_inbox: bool,
    pub(crate) tag_example: String,
    pub(crate) retention: String,
}

/// One row of the Spam table, formatted.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) uid: String,
    pub(crate) received: String,
    pub(crate) from: String,
    pub(crate) subject: String,
    pub(crate) score: String,
    pub(crate) deleted_at: String,
}

#[derive(Template, Debug)]
#[template(path = "spam.html")]
pub(crate) struct SpamFolderPage {
    pub(crate) nav: Option<Nav>,
    pub(crate) csrf: String,
    pub(crate) notice: Option<&'static str>,
    pub(crate) entries: Vec<Row>,
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) pages: usize,
    pub(crate) retention: String,
}

#[derive(Template, Debug)]
#[template(path = "confirm.html")]
pub(crate) struct ConfirmPage {
    pub(crate) nav: Option<Nav>,
    pub(crate) csrf: String,
    pub(crate) total: usize,
    pub(crate) upto: u128,
}

#[derive(Template, Debug)]
#[template(path = "help.html")]
pub(crate) struct HelpPage {
    pub(crate) nav: Option<Nav>,
    pub(crate) s: crate::client_settings::ClientSettings,
    pub(crate) window: String,
    pub(crate) retention: String,
}

#[derive(Template, Debug)]
#[template(path = "release.html")]
pub(crate) struct ReleasePage {
    pub(crate) nav: Option<Nav>,
    pub(crate) from: String,
    pub(crate) subject: String,
    pub(crate) received: String,
    pub(crate) u: String,
    pub(crate) m: String,
    pub(crate) e: u64,
    pub(crate) t: String,
}

#[derive(Template, Debug)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub(crate) nav: Option<Nav>,
    pub(crate) title: &'static str,
    pub(crate) text: String,
    pub(crate) link: &'static str,
    pub(crate) link_text: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_mail_data() {
        let p = SpamFolderPage {
            nav: Some(Nav {
                user: "joe".into(),
                csrf: "c".repeat(32),
                page: "spam",
            }),
            csrf: "c".repeat(32),
            notice: None,
            entries: vec![Row {
                uid: "0000000100000001".into(),
                received: "2026-11-27 10:00 UTC".into(),
                from: "<script>alert(1)</script>".into(),
                subject: "\"><img src=x onerror=alert(1)>".into(),
                score: "1000.0".into(),
                deleted_at: "2026-12-04 10:00 UTC".into(),
            }],
            total: 1,
            page: 1,
            pages: 1,
            retention: "7 days".into(),
        };
        let html = p.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
        assert!(html.contains("&#34;&#62;&#60;img"), "{html}");
        assert!(html.contains("name=\"viewport\""));
        assert!(html.contains(r#"<input type="hidden" name="csrf" value="cccccccc"#));
    }

    #[test]
    fn settings_page_shows_current_values() {
        let p = SettingsPage {
            nav: None,
            csrf: "x".into(),
            saved: true,
            spam_scanning: false,
            subject_prefix: true,
            folder_inbox: true,
            tag_example: "**SPAM( 7.3)**".into(),
            retention: "7 days".into(),
        };
        let html = p.render().unwrap();
        for label in [
            "SPAM Scanning",
            "Subject Prefixing",
            "Deliver Spam to which folder?",
            "Spam folder",
        ] {
            assert!(html.contains(label), "{label}");
        }
        assert!(
            html.contains(r#"value="off" id="scanning-off" checked"#),
            "{html}"
        );
        assert!(
            html.contains(r#"value="on" id="prefix-on" checked"#),
            "{html}"
        );
        assert!(
            html.contains(r#"value="INBOX" id="folder-inbox" checked"#),
            "{html}"
        );
        assert!(!html.contains(r#"id="folder-spam" checked"#), "{html}");
    }
}
