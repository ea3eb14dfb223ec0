//! Crawls (`POST /v1/crawls`): a batch that grows. The start page is a job of a new batch whose
//! row keeps the crawl's rules; each crawl page's job has the executor read the page's links
//! (`Job::crawl`), and before the page's end is stored, the links the rules follow are added to
//! the batch as jobs of the next depth (`Store::extend_crawl`: each URL once, up to the page
//! limit), so the batch is never seen done while pages it leads to are still to be added. Results
//! come as the pages finish, each a job's; the batch's webhook comes at the end, as a batch's.
//!
//! robots.txt is read (through the egress proxy, once per origin for a while) and obeyed unless
//! the crawl says otherwise; the start origin's sitemap can be a source of pages too.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use super::{BatchRecord, JobError, Jobs, Submission, new_id, now_ms};
use crate::job::options::CrawlOptions;
use crate::job::{CrawlPage, Job, Target};
use crate::store::NewBatch;

/// The user agent robots.txt rules are read for.
const ROBOTS_AGENT: &str = "pagewright";
/// How long a site's robots.txt is trusted before it is read again.
const ROBOTS_FOR: Duration = Duration::from_secs(600);
/// Origins whose robots.txt is remembered.
const ROBOTS_KEPT: usize = 1024;
/// Fetching robots.txt or a sitemap: at most this long, and this many bytes.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const FETCH_MAX_BYTES: usize = 8 << 20;
/// Sitemaps one crawl reads at most (an index's children included).
const MAX_SITEMAPS: usize = 10;

/// What a crawl keeps in its batch row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCrawl {
    /// The start page's origin, for `same_origin`.
    origin: String,
    rules: CrawlOptions,
}

/// A crawl's rules, compiled: which URLs it takes in.
struct Follow {
    origin: String,
    same_origin: bool,
    include: Vec<regex::Regex>,
    exclude: Vec<regex::Regex>,
}

impl Follow {
    fn new(stored: &StoredCrawl) -> Result<Self, JobError> {
        let (include, exclude) = stored
            .rules
            .patterns()
            .map_err(|error| JobError::Invalid(error.to_string()))?;
        Ok(Self {
            origin: stored.origin.clone(),
            same_origin: stored.rules.same_origin,
            include,
            exclude,
        })
    }

    /// `link` without its fragment, if the crawl takes it in.
    fn take(&self, link: &str) -> Option<Url> {
        let mut url = Url::parse(link).ok()?;
        url.set_fragment(None);
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        if self.same_origin && url.origin().ascii_serialization() != self.origin {
            return None;
        }
        let text = url.as_str();
        let included =
            self.include.is_empty() || self.include.iter().any(|pattern| pattern.is_match(text));
        let excluded = self.exclude.iter().any(|pattern| pattern.is_match(text));
        (included && !excluded).then_some(url)
    }
}

/// An origin's robots.txt rules as read (`None`: it has none), and when.
type ReadRobots = (Instant, Option<Arc<texting_robots::Robot>>);

/// robots.txt and sitemaps, fetched through the egress proxy.
#[derive(Debug)]
pub(super) struct SiteFiles {
    client: reqwest::Client,
    robots: Mutex<lru::LruCache<String, ReadRobots>>,
}

impl SiteFiles {
    pub fn new(egress_proxy: Option<&str>) -> Self {
        let mut client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("pagewright/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = egress_proxy.and_then(|url| reqwest::Proxy::all(url).ok()) {
            client = client.proxy(proxy);
        }
        Self {
            client: client.build().unwrap_or_default(),
            robots: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(ROBOTS_KEPT).expect("not zero"),
            )),
        }
    }

    /// A body, if the answer was a success and not too large.
    async fn fetch(&self, url: &str) -> Option<Vec<u8>> {
        let response = self.client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.bytes().await.ok()?;
        (body.len() <= FETCH_MAX_BYTES).then(|| body.to_vec())
    }

    /// The origin's robots.txt rules for pagewright; `None` when it has none (or none could be
    /// read: a site that does not answer is crawled as one without rules).
    async fn robots(&self, origin: &str) -> Option<Arc<texting_robots::Robot>> {
        if let Some((read_at, robot)) = self
            .robots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(origin)
            && read_at.elapsed() < ROBOTS_FOR
        {
            return robot.clone();
        }
        let robot = self
            .fetch(&format!("{origin}/robots.txt"))
            .await
            .and_then(|body| texting_robots::Robot::new(ROBOTS_AGENT, &body).ok())
            .map(Arc::new);
        self.robots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(origin.to_owned(), (Instant::now(), robot.clone()));
        robot
    }

    async fn allowed(&self, url: &Url) -> bool {
        match self.robots(&url.origin().ascii_serialization()).await {
            Some(robot) => robot.allowed(url.as_str()),
            None => true,
        }
    }

    /// The page URLs the origin's sitemaps list: `/sitemap.xml` and those its robots.txt names,
    /// an index's children included, at most `limit`.
    async fn sitemap_urls(&self, origin: &str, limit: usize) -> Vec<String> {
        let mut queue = vec![format!("{origin}/sitemap.xml")];
        if let Some(robot) = self.robots(origin).await {
            queue.extend(robot.sitemaps.iter().cloned());
        }
        let mut read = 0;
        let mut pages = Vec::new();
        while let Some(sitemap) = queue.pop() {
            if read == MAX_SITEMAPS || pages.len() >= limit {
                break;
            }
            read += 1;
            let Some(body) = self.fetch(&sitemap).await else {
                continue;
            };
            let (is_index, locations) = sitemap_locations(&String::from_utf8_lossy(&body));
            if is_index {
                queue.extend(locations);
            } else {
                pages.extend(locations);
            }
        }
        pages.truncate(limit);
        pages
    }
}

/// The `<loc>`s of a sitemap, and whether it is an index of sitemaps (`<sitemapindex>`).
fn sitemap_locations(xml: &str) -> (bool, Vec<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut is_index = false;
    let mut in_loc = false;
    let mut location = String::new();
    let mut locations = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => match start.local_name().as_ref() {
                "sitemapindex" => is_index = true,
                "loc" => {
                    in_loc = true;
                    location.clear();
                }
                _ => {}
            },
            Ok(Event::Text(text)) if in_loc => location.push_str(&text.xml10_content()),
            Ok(Event::CData(data)) if in_loc => {
                location.push_str(&data);
            }
            Ok(Event::GeneralRef(reference)) if in_loc => {
                location.push('&');
                location.push_str(&reference);
                location.push(';');
            }
            Ok(Event::End(end)) if end.local_name().as_ref() == "loc" => {
                in_loc = false;
                if let Ok(unescaped) = quick_xml::escape::unescape(location.trim()) {
                    locations.push(unescaped.into_owned());
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (is_index, locations)
}

/// What a crawl is for, beside its start page.
#[derive(Debug, Clone)]
pub struct CrawlSubmission {
    pub tenant: String,
    pub plugin: String,
    pub webhook: Option<String>,
    pub rules: CrawlOptions,
}

impl Jobs {
    /// Starts a crawl at `start`: its batch, the start page and, if asked, the sitemap's pages.
    pub async fn submit_crawl(
        &self,
        start: (Job, Submission),
        crawl: CrawlSubmission,
    ) -> Result<BatchRecord, JobError> {
        let inner = &self.inner;
        self.make_room(1)?;
        let (mut job, submission) = start;
        let Target::Url(start_url) = &job.target else {
            return Err(JobError::Invalid("a crawl starts at a URL".into()));
        };
        let start_url =
            Url::parse(start_url).map_err(|error| JobError::Invalid(error.to_string()))?;
        let stored = StoredCrawl {
            origin: start_url.origin().ascii_serialization(),
            rules: crawl.rules,
        };
        let follow = Follow::new(&stored)?;
        let rules = &stored.rules;
        if rules.robots && !inner.site_files.allowed(&start_url).await {
            return Err(JobError::RobotsDisallowed(start_url.to_string()));
        }
        let id = format!("b{}", new_id());
        job.crawl = Some(CrawlPage {
            batch: id.clone(),
            depth: 0,
        });
        let mut pages = vec![self.new_job(&job, &submission).await];
        if rules.sitemap {
            let room = rules.max_pages as usize - 1;
            let listed = inner
                .site_files
                .sitemap_urls(&stored.origin, room.saturating_mul(4))
                .await;
            let mut seen = std::collections::HashSet::from([start_url.to_string()]);
            for link in listed {
                if pages.len() > room {
                    break;
                }
                let Some(url) = follow.take(&link) else {
                    continue;
                };
                if !seen.insert(url.to_string())
                    || (rules.robots && !inner.site_files.allowed(&url).await)
                {
                    continue;
                }
                let (child, submission) = child_of(&job, &submission, &url, 1);
                pages.push(self.new_job(&child, &submission).await);
            }
        }
        for (index, page) in pages.iter_mut().enumerate() {
            page.batch = Some((id.clone(), index as i64));
        }
        let count = pages.len();
        let batch = NewBatch {
            id: id.clone(),
            tenant: crawl.tenant,
            plugin: crawl.plugin,
            webhook: crawl.webhook,
            submitted_at: now_ms(),
            crawl: Some(serde_json::to_string(&stored).expect("crawl rules serialize")),
        };
        inner.store.create_batch(&batch, &pages).await?;
        self.queued_more(count);
        self.batch(&id, 0, 1000).await
    }

    /// Adds to a crawl the pages `page` links to that its rules follow, as jobs one link deeper;
    /// before `page`'s end is stored, so the crawl is never seen done while they are still to
    /// come. A crawl at its depth or page limit takes none.
    pub(super) async fn extend_crawl(
        &self,
        page: &Job,
        plugin: &str,
        links: &[String],
    ) -> Result<usize, JobError> {
        let inner = &self.inner;
        let Some(place) = &page.crawl else {
            return Ok(0);
        };
        let Some(stored) = inner.store.batch_crawl(&place.batch).await? else {
            return Ok(0);
        };
        let stored: StoredCrawl = serde_json::from_str(&stored)
            .map_err(|error| JobError::Invalid(format!("a crawl's stored rules: {error}")))?;
        if place.depth >= stored.rules.max_depth {
            return Ok(0);
        }
        let follow = Follow::new(&stored)?;
        let submission = Submission {
            plugin: plugin.to_owned(),
            tenant: page.tenant.clone(),
            class: page.class,
            number: page.number,
            url: None,
            webhook: None,
        };
        let mut seen = std::collections::HashSet::new();
        let mut children = Vec::new();
        for link in links {
            let Some(url) = follow.take(link) else {
                continue;
            };
            if !seen.insert(url.to_string())
                || (stored.rules.robots && !inner.site_files.allowed(&url).await)
            {
                continue;
            }
            let (child, submission) = child_of(page, &submission, &url, place.depth + 1);
            children.push(self.new_job(&child, &submission).await);
            if children.len() >= stored.rules.max_pages as usize {
                break;
            }
        }
        if children.is_empty() {
            return Ok(0);
        }
        let added = inner
            .store
            .extend_crawl(&place.batch, i64::from(stored.rules.max_pages), children)
            .await?;
        if added > 0 {
            self.queued_more(added);
        }
        Ok(added)
    }
}

/// The job for `url` found from `page`: the same options, one link deeper.
fn child_of(page: &Job, submission: &Submission, url: &Url, depth: u32) -> (Job, Submission) {
    let mut child = page.clone();
    child.target = Target::Url(url.to_string());
    child.received_at = Instant::now();
    if let Some(place) = &mut child.crawl {
        place.depth = depth;
    }
    let submission = Submission {
        url: Some(url.to_string()),
        webhook: None,
        ..submission.clone()
    };
    (child, submission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sitemaps_and_indexes_give_their_locations_unescaped() {
        let sitemap = r#"<?xml version="1.0" encoding="UTF-8"?>
            <urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
              <url><loc>https://example.com/a?x=1&amp;y=2</loc></url>
              <url><loc> https://example.com/b </loc><lastmod>2026-01-01</lastmod></url>
            </urlset>"#;
        assert_eq!(
            sitemap_locations(sitemap),
            (
                false,
                vec![
                    "https://example.com/a?x=1&y=2".to_owned(),
                    "https://example.com/b".to_owned()
                ]
            )
        );
        let index = r#"<sitemapindex><sitemap><loc>https://example.com/s1.xml</loc></sitemap></sitemapindex>"#;
        assert_eq!(
            sitemap_locations(index),
            (true, vec!["https://example.com/s1.xml".to_owned()])
        );
        assert_eq!(sitemap_locations("not xml <<<"), (false, Vec::new()));
    }

    #[test]
    fn links_are_taken_by_origin_and_pattern_without_fragments() {
        let rules: CrawlOptions = serde_json::from_value(serde_json::json!({
            "include": ["/docs/"], "exclude": ["\\.pdf$"]
        }))
        .expect("rules");
        let follow = Follow::new(&StoredCrawl {
            origin: "https://example.com".into(),
            rules,
        })
        .expect("compiled");
        let taken = |link: &str| follow.take(link).map(String::from);
        assert_eq!(
            taken("https://example.com/docs/a#part").as_deref(),
            Some("https://example.com/docs/a")
        );
        assert_eq!(taken("https://example.com/blog/a"), None, "not included");
        assert_eq!(taken("https://example.com/docs/a.pdf"), None, "excluded");
        assert_eq!(
            taken("https://other.example/docs/a"),
            None,
            "another origin"
        );
        assert_eq!(taken("mailto:someone@example.com"), None);
    }
}
