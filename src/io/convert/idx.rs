//! IDX files (the MNIST format: big-endian header, unsigned-byte payload) into a dense split:
//! parsing an images file and its labels file ([`parse_idx`]) and the files `gradcode data
//! convert --format idx` reads (`read_splits`). A header is never trusted for an allocation:
//! the payload is read incrementally up to the declared size (RELIABILITY BI-6).
//!
//! Not done here: IDX types other than unsigned byte (refused by name), the task (multiclass by
//! default) and the assembly into a dataset (see [`super::convert`]).

use std::io::Read;
use std::path::Path;

use ndarray::Array2;

use super::input::open_input;
use super::{required, ConvertOptions, Parsed, RawSplit, RawX};
use crate::data::ImageShape;
use crate::io::dataset::{MAX_BYTES, MAX_ROWS};
use crate::io::IoError;

const IDX_IMAGES: u32 = 0x0000_0803;
const IDX_LABELS: u32 = 0x0000_0801;

/// Read and check an IDX header (magic, unsigned-byte type, `expect_ndim` dimensions):
/// (dims, payload bytes), the product checked for overflow.
fn read_header(
    r: &mut impl Read,
    path: &Path,
    expect_ndim: u8,
    what: &str,
) -> Result<(Vec<usize>, u64), IoError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)
        .map_err(|_| IoError::layout(path, "file is shorter than the 4-byte IDX header"))?;
    if head[0] != 0 || head[1] != 0 {
        return Err(IoError::layout(
            path,
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x} (expected 0000080{expect_ndim} for {what})",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    if head[2] != 0x08 {
        let name = match head[2] {
            0x09 => "signed byte",
            0x0B => "short",
            0x0C => "int",
            0x0D => "float",
            0x0E => "double",
            _ => "unknown",
        };
        return Err(IoError::layout(
            path,
            format!(
                "IDX type code 0x{:02x} ({name}) is not supported (expected 0x08, unsigned byte)",
                head[2]
            ),
        ));
    }
    let ndim = head[3];
    if ndim != expect_ndim {
        return Err(IoError::layout(path, format!(
                "IDX file has {ndim} dimensions, expected {expect_ndim} for {what} (magic 0x{:08x})",
                if expect_ndim == 3 { IDX_IMAGES } else { IDX_LABELS }
            ),
        ));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut total: u64 = 1;
    for d in 0..ndim {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|_| IoError::layout(path, "file ends inside the IDX header"))?;
        let v = u32::from_be_bytes(b);
        total = total.checked_mul(v as u64).ok_or_else(|| {
            IoError::layout(path, format!("IDX dimensions overflow at dimension {d}"))
        })?;
        dims.push(v as usize);
    }
    Ok((dims, total))
}

/// Read an IDX file of unsigned bytes with `ndim` dimensions: (dims, payload).
///
/// The payload is read incrementally up to the declared size, so a header that lies costs at
/// most the bytes the file really holds.
fn read_idx(path: &Path, expect_ndim: u8, what: &str) -> Result<(Vec<usize>, Vec<u8>), IoError> {
    let mut r = open_input(path)?;
    let (dims, total) = read_header(&mut r, path, expect_ndim, what)?;
    if dims[0] > MAX_ROWS {
        return Err(IoError::layout(
            path,
            format!(
                "IDX file declares {} items, over the cap of {MAX_ROWS}",
                dims[0]
            ),
        ));
    }
    let f64_bytes = total.saturating_mul(8);
    if f64_bytes > MAX_BYTES {
        return Err(IoError::layout(path, format!(
                "IDX file declares dimensions {dims:?} ({f64_bytes} bytes as f64), over the cap of {MAX_BYTES} bytes"
            ),
        ));
    }
    let mut data = Vec::new();
    r.by_ref().take(total).read_to_end(&mut data).map_err(|e| {
        IoError::layout(
            path,
            format!("read error (corrupt or truncated compressed data?): {e}"),
        )
    })?;
    if (data.len() as u64) < total {
        return Err(IoError::layout(path, format!(
                "file is shorter than declared: {} of {total} payload bytes for dimensions {dims:?}",
                data.len()
            ),
        ));
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(IoError::layout(
                path,
                format!(
                    "file is longer than declared ({total} payload bytes for dimensions {dims:?})"
                ),
            ))
        }
        Err(e) => {
            return Err(IoError::layout(
                path,
                format!("read error after the payload: {e}"),
            ))
        }
    }
    Ok((dims, data))
}

/// Parse an IDX images file and its labels file into dense rows (pixels scaled by 1/255 when
/// `scale`) and raw labels.
pub fn parse_idx(images: &Path, labels: &Path, scale: bool) -> Result<RawSplit, IoError> {
    parse_idx_image(images, labels, scale).map(|(split, _)| split)
}

/// [`parse_idx`] and the shape of its images (one channel, height × width from the header).
fn parse_idx_image(
    images: &Path,
    labels: &Path,
    scale: bool,
) -> Result<(RawSplit, ImageShape), IoError> {
    let (idims, pixels) = read_idx(images, 3, "images")?;
    let (ldims, lab) = read_idx(labels, 1, "labels")?;
    if idims[0] != ldims[0] {
        return Err(IoError::layout(
            labels,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                idims[0],
                images.display()
            ),
        ));
    }
    let (n, cols) = (idims[0], idims[1] * idims[2]);
    if cols == 0 {
        return Err(IoError::layout(images, "images have no pixels"));
    }
    let s = if scale { 1.0 / 255.0 } else { 1.0 };
    let x = Array2::from_shape_vec((n, cols), pixels.iter().map(|&p| p as f64 * s).collect())
        .map_err(|e| IoError::layout(images, e.to_string()))?;
    let image = ImageShape {
        channels: 1,
        height: idims[1],
        width: idims[2],
    };
    let split = RawSplit {
        x: RawX::Dense(x),
        y: lab.iter().map(|&l| l as f64).collect(),
        lines: vec![0; n],
        path: labels.to_path_buf(),
    };
    Ok((split, image))
}

/// Parse `opts.input` with `opts.labels` (and the test pair) as IDX.
pub(super) fn read_splits(opts: &ConvertOptions) -> Result<Parsed, IoError> {
    let labels = required(&opts.labels, "--labels", "for IDX input")?;
    let mut inputs = vec![opts.input.clone(), labels.to_path_buf()];
    let (train, image) = parse_idx_image(&opts.input, labels, opts.scale)?;
    let test = match &opts.test_input {
        Some(t) => {
            let tl = required(&opts.test_labels, "--test-labels", "with --test-input")?;
            inputs.push(t.clone());
            inputs.push(tl.to_path_buf());
            let (test, test_image) = parse_idx_image(t, tl, opts.scale)?;
            if test_image != image {
                return Err(IoError::layout(
                    t,
                    format!("test images are {test_image} but training images are {image}"),
                ));
            }
            Some(test)
        }
        None => None,
    };
    Ok(Parsed {
        train,
        test,
        inputs,
        warnings: Vec::new(),
        image: Some(image),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{idx, opts, write};
    use super::super::{convert, InputFormat};
    use super::*;
    use crate::data::{Features, Task};

    #[test]
    fn idx_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = write(
            dir.path(),
            "i",
            &idx(
                [0, 0, 8, 3],
                &[3, 2, 2],
                &[0, 255, 51, 0, 1, 2, 3, 4, 255, 255, 255, 255],
            ),
        );
        let labs = write(dir.path(), "l", &idx([0, 0, 8, 1], &[3], &[7, 0, 3]));
        let s = parse_idx(&imgs, &labs, true).unwrap();
        let RawX::Dense(x) = &s.x else { panic!() };
        assert_eq!(x.shape(), &[3, 4]);
        assert_eq!(x[[0, 1]], 1.0);
        assert_eq!(x[[0, 2]], 0.2);
        assert_eq!(s.labels(), &[7.0, 0.0, 3.0]);
        let mut o = opts(InputFormat::Idx, imgs.clone());
        o.labels = Some(labs.clone());
        o.scale = false;
        let c = convert(&o).unwrap();
        assert_eq!(c.train.task, Task::Multiclass { classes: 10 });
        let Features::Dense(x) = &c.train.x else {
            panic!()
        };
        assert_eq!(x[[2, 3]], 255.0);
        // The images' shape goes with the dataset (the CNN reads it).
        let image = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        assert_eq!(c.meta.image, Some(image));

        let bad = |name: &str, bytes: Vec<u8>, images: bool| -> String {
            let f = write(dir.path(), name, &bytes);
            let r = if images {
                parse_idx(&f, &labs, true)
            } else {
                parse_idx(&imgs, &f, true)
            };
            r.unwrap_err().to_string()
        };
        for (bytes, images, want) in [
            (idx([1, 0, 8, 3], &[1, 1, 1], &[0]), true, "bad IDX magic"),
            (
                idx([0, 0, 0x0D, 3], &[1, 1, 1], &[0; 4]),
                true,
                "type code 0x0d (float)",
            ),
            (
                idx([0, 0, 8, 0], &[], &[]),
                true,
                "0 dimensions, expected 3",
            ),
            (idx([0, 0, 8, 255], &[1, 1, 1], &[]), true, "255 dimensions"),
            (
                idx([0, 0, 8, 1], &[3], &[0, 0, 0]),
                true,
                "1 dimensions, expected 3",
            ),
            (
                idx([0, 0, 8, 3], &[u32::MAX, u32::MAX, u32::MAX], &[]),
                true,
                "overflow",
            ),
            (
                idx([0, 0, 8, 3], &[1 << 30, 1 << 20, 1], &[]),
                true,
                "over the cap",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2, 2], &[0; 11]),
                true,
                "shorter than declared: 11 of 12",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2, 2], &[0; 13]),
                true,
                "longer than declared",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2], &[]),
                true,
                "ends inside the IDX header",
            ),
            (vec![0, 0], true, "shorter than the 4-byte IDX header"),
            (
                idx([0, 0, 8, 1], &[2], &[1, 2]),
                false,
                "2 labels for 3 images",
            ),
            (
                idx([0, 0, 8, 1], &[3], &[1, 2]),
                false,
                "shorter than declared",
            ),
        ] {
            let e = bad("bad", bytes, images);
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        // Huge declared size, tiny file: refused without allocating the declared size.
        let e = bad(
            "big",
            idx([0, 0, 8, 3], &[60000, 1000, 100], &[1, 2, 3]),
            true,
        );
        assert!(e.contains("shorter than declared: 3 of 6000000000"), "{e}");
        // Label file needs --labels.
        let e = convert(&opts(InputFormat::Idx, imgs))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--labels is required"), "{e}");
    }
}
