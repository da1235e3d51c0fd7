//! A figure as SVG text or PNG bytes, each carrying actopo's mark.
//!
//! Text: plotters measures text with ab_glyph and the DejaVu Sans font compiled into the binary
//! (the `dejavu` crate), so no system font is needed. The SVG names the font family `sans-serif`
//! and leaves drawing the glyphs to the viewer; the PNG is rasterised with the embedded font.

use std::sync::Once;

use plotters::prelude::*;

use super::draw::Figure;

/// The first line of every SVG (and HTML page) actopo writes: the mark of "ours".
pub fn mark() -> String {
    format!("{MARK_PREFIX}{} -->", env!("CARGO_PKG_VERSION"))
}

/// How an actopo mark starts (any version's).
pub const MARK_PREFIX: &str = "<!-- written by actopo ";

/// The PNG text chunk that marks a PNG actopo wrote.
pub const PNG_MARK_KEY: &str = "Software";

/// How the mark chunk's text starts (any version's).
pub const PNG_MARK_PREFIX: &str = "actopo ";

pub fn png_mark_value() -> String {
    format!("{PNG_MARK_PREFIX}{}", env!("CARGO_PKG_VERSION"))
}

/// Registers the embedded font under the family name the figures use (once per process).
fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font is a constant of this build: failing to parse it is a bug, not bad input.
        let regular = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        assert!(
            regular.is_ok(),
            "the embedded DejaVu Sans font does not parse"
        );
    });
}

/// The figure as a standalone SVG document, starting with actopo's mark.
pub fn svg(figure: &Figure) -> anyhow::Result<String> {
    register_font();
    let mut body = String::new();
    {
        let root = SVGBackend::with_string(&mut body, figure.size()).into_drawing_area();
        figure.draw(&root)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("rendering {}: {e}", figure.title()))?;
    }
    Ok(format!("{}\n{body}", mark()))
}

/// The figure as PNG bytes (RGB, 8 bit) with actopo's mark in a text chunk.
pub fn png(figure: &Figure) -> anyhow::Result<Vec<u8>> {
    register_font();
    let (w, h) = figure.size();
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        figure.draw(&root)?;
        root.present()
            .map_err(|e| anyhow::anyhow!("rendering {}: {e}", figure.title()))?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.add_text_chunk(PNG_MARK_KEY.to_string(), png_mark_value())?;
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(bytes)
}
