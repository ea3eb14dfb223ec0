//! The WIT types, re-exported under plain names, with the constructors and defaults that make them
//! pleasant to use and the serde shapes that match pagewright's HTTP API (so a plugin can take
//! `ScreenshotOptions` as its params and accept exactly what `POST /v1/screenshot` accepts).

use std::fmt;

use serde::Deserialize;

pub use crate::__private::bindings::pagewright::plugin::log::Level;
pub use crate::__private::bindings::pagewright::plugin::page::{
    Clip, Cookie, Element, ElementState, FunctionWait, Geolocation, GotoOptions, ImageFormat,
    Margins, MediaType, Navigation, PaperFormat, PdfMetadata, PdfOptions, SameSite,
    ScreenshotOptions, ScrollBy, ScrollTarget, SelectorWait, Viewport, WaitUntil,
};
pub use crate::__private::bindings::pagewright::plugin::types::{
    Binary, Error, JobInfo, OriginStats, Output, PriorityClass,
};

impl Error {
    /// The plugin failed for its own reasons (answered with 422 `plugin_failed`).
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The caller's input was wrong (answered with 400).
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::InvalidInput(message.to_string())
    }

    /// The message, whatever the case.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(message)
            | Self::Timeout(message)
            | Self::Navigation(message)
            | Self::NotFound(message)
            | Self::Script(message)
            | Self::TooLarge(message)
            | Self::Crashed(message)
            | Self::Failed(message) => message,
        }
    }
}

impl Element {
    /// The value of the attribute `name`, if it was asked for in the query and the element has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(asked, _)| asked == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

impl Output {
    /// `value` serialised as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_string(value)
            .map(Self::Json)
            .map_err(|error| Error::failed(format!("serialising the output as JSON: {error}")))
    }

    /// Plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// Bytes with their media type, such as `image/png`.
    pub fn bytes(content_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self::Bytes(Binary {
            content_type: content_type.into(),
            data,
        })
    }
}

impl Default for WaitUntil {
    fn default() -> Self {
        Self::Load
    }
}

impl Default for GotoOptions {
    fn default() -> Self {
        Self {
            wait_until: WaitUntil::Load,
            timeout_ms: None,
            referrer: None,
            wait_for_selector: None,
            wait_for_function: None,
            wait_ms: None,
            best_attempt: false,
        }
    }
}

impl Default for ImageFormat {
    fn default() -> Self {
        Self::Png
    }
}

impl ImageFormat {
    /// The media type of images in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }
}

impl Default for ScreenshotOptions {
    fn default() -> Self {
        Self {
            format: ImageFormat::Png,
            quality: None,
            full_page: false,
            clip: None,
            selector: None,
            omit_background: false,
            scale: None,
            capture_beyond_viewport: None,
            optimize_for_speed: false,
        }
    }
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            device_scale_factor: 1.0,
            mobile: false,
        }
    }
}

/// serde default for `Viewport::device_scale_factor`.
pub(crate) fn one() -> f64 {
    1.0
}

/// A print length in inches, from a number of inches or a string with a unit: `"1in"`, `"2.5cm"`,
/// `"10mm"`, `"96px"` (as the HTTP API accepts).
pub(crate) fn length<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Inches(f64),
        Text(String),
    }
    let text = match Option::<Raw>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Raw::Inches(inches)) => return Ok(Some(inches)),
        Some(Raw::Text(text)) => text,
    };
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not a length such as \"1in\", \"2cm\", \"10mm\" or \"96px\""
        ))
    })?;
    let per_inch = match unit {
        "" | "in" => 1.0,
        "cm" => 2.54,
        "mm" => 25.4,
        "px" => 96.0,
        _ => {
            return Err(serde::de::Error::custom(format!(
                "unknown length unit `{unit}` (use in, cm, mm or px)"
            )));
        }
    };
    Ok(Some(value / per_inch))
}
