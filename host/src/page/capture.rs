//! Output: screenshots (viewport, full page, clip, element) and PDF.

use super::{Page, PageError, json_string, selector_error};
use crate::job::options::{ImageFormat, Length, MAX_PIXELS, PdfOptions, ScreenshotOptions};
use base64::Engine;
use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::SetDefaultBackgroundColorOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, GetLayoutMetricsParams,
    GetLayoutMetricsReturns, PrintToPdfParams, Viewport as ClipRect,
};
use chromiumoxide::error::CdpError;

impl Page<'_> {
    /// Captures the viewport, the full page, a clip rectangle or one element.
    pub async fn screenshot(&self, options: &ScreenshotOptions) -> Result<Vec<u8>, PageError> {
        let beyond_viewport = options.capture_beyond_viewport.unwrap_or(true);
        let area = if options.full_page {
            let size = self.layout_metrics().await?.css_content_size;
            Some((0.0, 0.0, size.width, size.height))
        } else if let Some(clip) = options.clip {
            Some((clip.x, clip.y, clip.width, clip.height))
        } else if let Some(selector) = &options.selector {
            Some(self.element_box(selector, !beyond_viewport).await?)
        } else if options.scale.is_some() {
            // Only a clip carries a scale: the viewport as one.
            let viewport = self.layout_metrics().await?.css_visual_viewport;
            Some((
                viewport.page_x,
                viewport.page_y,
                viewport.client_width,
                viewport.client_height,
            ))
        } else {
            None
        };
        let clip = area
            .map(|(x, y, width, height)| self.checked_clip(x, y, width, height, options.scale))
            .transpose()?;
        let params = CaptureScreenshotParams {
            format: Some(match options.format {
                ImageFormat::Png => CaptureScreenshotFormat::Png,
                ImageFormat::Jpeg => CaptureScreenshotFormat::Jpeg,
                ImageFormat::Webp => CaptureScreenshotFormat::Webp,
            }),
            quality: options.quality.map(i64::from),
            // Capturing beyond the viewport with a clip leaves no device-metrics override behind,
            // unlike resizing the viewport to the page (which chromiumoxide's full-page mode does).
            capture_beyond_viewport: Some(clip.is_some() && (beyond_viewport || options.full_page)),
            clip,
            from_surface: Some(true),
            optimize_for_speed: options.optimize_for_speed.then_some(true),
        };
        let transparent = options.omit_background && options.format != ImageFormat::Jpeg;
        let captured = self
            .with_background_cleared(transparent, async || {
                self.step(
                    "capture screenshot",
                    self.deadline,
                    self.cdp().execute(params),
                )
                .await
            })
            .await?;
        decode_base64(captured.result.data.as_ref(), "screenshot")
    }

    async fn layout_metrics(&self) -> Result<GetLayoutMetricsReturns, PageError> {
        Ok(self
            .step(
                "measure the page",
                self.deadline,
                self.cdp().execute(GetLayoutMetricsParams::default()),
            )
            .await?
            .result)
    }

    /// The box of the first element matching `selector`, in page coordinates; scrolled into view
    /// first if asked.
    async fn element_box(
        &self,
        selector: &str,
        into_view: bool,
    ) -> Result<(f64, f64, f64, f64), PageError> {
        let script = format!(
            "(() => {{ const element = document.querySelector({s}); if (!element) return null; \
               if ({into_view}) element.scrollIntoView({{ block: 'nearest', inline: 'nearest' }}); \
               const box = element.getBoundingClientRect(); \
               return [box.left + scrollX, box.top + scrollY, box.width, box.height]; }})()",
            s = json_string(selector)
        );
        let value = self
            .evaluate(&script)
            .await
            .map_err(|error| selector_error(error, selector))?;
        let rect: Option<[f64; 4]> = serde_json::from_value(value).unwrap_or(None);
        let [x, y, width, height] = rect.ok_or_else(|| PageError::NotFound(selector.to_owned()))?;
        if width < 1.0 || height < 1.0 {
            return Err(PageError::InvalidInput(format!(
                "`{selector}` has an empty box"
            )));
        }
        Ok((x, y, width, height))
    }

    /// Runs `capture` with a transparent default background if `transparent`, and puts the white
    /// one back after, whatever `capture` returned.
    async fn with_background_cleared<T>(
        &self,
        transparent: bool,
        capture: impl AsyncFnOnce() -> Result<T, PageError>,
    ) -> Result<T, PageError> {
        if !transparent {
            return capture().await;
        }
        let clear = SetDefaultBackgroundColorOverrideParams::builder()
            .color(Rgba {
                r: 0,
                g: 0,
                b: 0,
                a: Some(0.0),
            })
            .build();
        self.step(
            "clear the background",
            self.deadline,
            self.cdp().execute(clear),
        )
        .await?;
        let captured = capture().await;
        let restore = SetDefaultBackgroundColorOverrideParams::default();
        self.step(
            "restore the background",
            self.deadline,
            self.cdp().execute(restore),
        )
        .await?;
        captured
    }

    /// A clip of the page, checked against Chromium's size limit. `scale` is image pixels per CSS
    /// pixel; without it, the viewport's device scale factor.
    fn checked_clip(
        &self,
        x: f64,
        y: f64,
        width: f64,
        height: f64,
        scale: Option<f64>,
    ) -> Result<ClipRect, PageError> {
        let device_scale = self
            .handle
            .changes()
            .viewport
            .map_or(1.0, |viewport| viewport.device_scale_factor);
        // Chromium's limit is on what it captures: image pixels, the CSS size times the scale (a
        // full page at scale 4 reaches it four times sooner).
        let image_scale = scale.unwrap_or(device_scale);
        let max = f64::from(MAX_PIXELS);
        if width * image_scale > max || height * image_scale > max {
            return Err(PageError::TooLarge(format!(
                "the area to capture is {width:.0}x{height:.0} CSS pixels, {:.0}x{:.0} device pixels \
                 at scale {image_scale}; Chromium captures at most {MAX_PIXELS} on a side: use a \
                 clip, a smaller scale, or a PDF for long pages",
                (width * image_scale).ceil(),
                (height * image_scale).ceil(),
            )));
        }
        Ok(ClipRect {
            x,
            y,
            width: width.max(1.0),
            height: height.max(1.0),
            // Chromium multiplies the clip's scale by the device scale factor.
            scale: image_scale / device_scale,
        })
    }

    /// Prints the page to PDF, with the document information asked for.
    pub async fn pdf(&self, options: &PdfOptions) -> Result<Vec<u8>, PageError> {
        let (width, height) = options.paper_inches();
        let margin = |length: Option<Length>| length.map(Length::inches);
        let with_header_footer =
            options.header_template.is_some() || options.footer_template.is_some();
        let params = PrintToPdfParams {
            landscape: Some(options.landscape),
            display_header_footer: Some(with_header_footer),
            print_background: Some(options.print_background),
            scale: options.scale,
            paper_width: Some(width),
            paper_height: Some(height),
            margin_top: margin(options.margin.top),
            margin_bottom: margin(options.margin.bottom),
            margin_left: margin(options.margin.left),
            margin_right: margin(options.margin.right),
            page_ranges: options.page_ranges.clone(),
            // Chromium prints its own default header when one template is missing; an empty span
            // keeps the side that was not asked for blank.
            header_template: with_header_footer.then(|| {
                options
                    .header_template
                    .clone()
                    .unwrap_or_else(|| "<span></span>".into())
            }),
            footer_template: with_header_footer.then(|| {
                options
                    .footer_template
                    .clone()
                    .unwrap_or_else(|| "<span></span>".into())
            }),
            prefer_css_page_size: Some(options.prefer_css_page_size),
            // The outline is built from the structure tags. Unasked, Chromium decides, as before
            // these options existed.
            generate_tagged_pdf: (options.tagged || options.outline).then_some(true),
            generate_document_outline: options.outline.then_some(true),
            ..PrintToPdfParams::default()
        };
        let printed = self
            .with_background_cleared(options.omit_background, async || {
                self.step("print to PDF", self.deadline, self.cdp().execute(params))
                    .await
            })
            .await;
        let printed = match printed {
            Err(PageError::Cdp {
                source: CdpError::Chrome(error),
                ..
            }) if error.message.contains("range") || error.message.contains("Page range") => {
                return Err(PageError::InvalidInput(format!(
                    "page_ranges: {}",
                    error.message
                )));
            }
            other => other?,
        };
        let pdf = decode_base64(printed.result.data.as_ref(), "PDF")?;
        match &options.metadata {
            Some(metadata) => {
                crate::pdf::set_metadata(&pdf, metadata).map_err(|error| PageError::Cdp {
                    step: "set the PDF's metadata",
                    source: CdpError::ChromeMessage(error.to_string()),
                })
            }
            None => Ok(pdf),
        }
    }
}

fn decode_base64(data: &str, what: &str) -> Result<Vec<u8>, PageError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| PageError::Cdp {
            step: "decode the output",
            source: CdpError::ChromeMessage(format!(
                "Chromium returned an undecodable {what}: {error}"
            )),
        })
}
