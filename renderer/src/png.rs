//! PNG encoding of tiles.

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};

use crate::raster::TileImage;

/// A PNG encoding problem (only from the encoder itself; tiles are always valid).
#[derive(Debug, thiserror::Error)]
#[error("PNG encoding failed: {0}")]
pub struct PngError(#[from] image::ImageError);

/// Encodes a tile of `size x size` pixels as PNG (fast deflate, Paeth filter: about
/// twice as fast as adaptive filtering for 10 % more bytes). Opaque tiles are written as RGB,
/// others as RGBA. The same pixels always give the same bytes.
pub fn encode_png(image: &TileImage, size: u32) -> Result<Vec<u8>, PngError> {
    match image {
        TileImage::Uniform(c) => encode_rgba(&c.0.repeat((size * size) as usize), size),
        TileImage::Pixels(p) => encode_rgba(p, size),
    }
}

/// Encodes straight RGBA rows of `size x size` pixels as PNG.
pub fn encode_rgba(rgba: &[u8], size: u32) -> Result<Vec<u8>, PngError> {
    assert_eq!(rgba.len(), (size * size * 4) as usize, "pixel buffer size");
    let mut out = Vec::with_capacity(8 * 1024);
    let encoder = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Paeth);
    if rgba.chunks_exact(4).all(|p| p[3] == 255) {
        let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
        for p in rgba.chunks_exact(4) {
            rgb.extend_from_slice(&p[..3]);
        }
        encoder.write_image(&rgb, size, size, image::ExtendedColorType::Rgb8)?;
    } else {
        encoder.write_image(rgba, size, size, image::ExtendedColorType::Rgba8)?;
    }
    Ok(out)
}
