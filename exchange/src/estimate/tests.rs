use super::media::pdf_pages;
use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A PNG's signature and IHDR for `w × h`, then `pad` bytes of noise.
fn png(w: u32, h: u32, pad: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend_from_slice(&w.to_be_bytes());
    b.extend_from_slice(&h.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0]);
    b.extend((0..pad).map(|i| (i * 7919 % 251) as u8));
    b
}

/// A JPEG whose frame header follows an EXIF segment of `exif` bytes.
fn jpeg(w: u16, h: u16, exif: usize) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe1];
    b.extend_from_slice(&((exif + 2) as u16).to_be_bytes());
    b.extend(std::iter::repeat_n(0x45, exif));
    b.extend_from_slice(&[0xff, 0xc2, 0x00, 0x11, 0x08]);
    b.extend_from_slice(&h.to_be_bytes());
    b.extend_from_slice(&w.to_be_bytes());
    b.extend_from_slice(&[3; 12]);
    b
}

/// A PDF with `pages` page objects (and its page tree).
fn pdf(pages: usize, filler: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n".to_vec();
    b.extend_from_slice(format!("2 0 obj << /Type /Pages /Count {pages} >> endobj\n").as_bytes());
    for i in 0..pages {
        b.extend_from_slice(
            format!("{} 0 obj << /Type /Page /Parent 2 0 R >>\n", i + 3).as_bytes(),
        );
        b.extend(std::iter::repeat_n(b'x', filler));
        b.extend_from_slice(b"\nendobj\n");
    }
    b
}

/// A Messages request with one base64 source of `media_type` and a text.
fn request(kind: &str, media_type: &str, data: &[u8], text: &str) -> Vec<u8> {
    serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": [
            {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": STANDARD.encode(data)}},
            {"type": "text", "text": text},
        ]}],
    })
    .to_string()
    .into_bytes()
}

#[test]
fn image_sizes_are_read_from_their_headers() {
    assert_eq!(image_size(&png(1024, 768, 0)), Some((1024, 768)));
    assert_eq!(image_size(b"GIF89a\x40\x01\xf0\x00rest"), Some((320, 240)));
    let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    webp.extend_from_slice(&[0x7f, 0x07, 0x00, 0x37, 0x04, 0x00]);
    assert_eq!(image_size(&webp), Some((1920, 1080)));
    assert_eq!(image_size(&jpeg(4032, 3024, 30_000)), Some((4032, 3024)));
    assert_eq!(image_size(b"not an image"), None);
    assert_eq!(image_size(&png(1, 1, 0)[..20]), None, "a cut header");
}

#[test]
fn image_tokens_follow_the_apis_rule_after_its_resize() {
    assert_eq!(image_tokens(200, 200), 54);
    assert_eq!(image_tokens(1000, 1000), 1334);
    assert_eq!(
        image_tokens(1092, 1092),
        1590,
        "the docs' 1:1 size, about 1,590"
    );
    // Scaled down to the cap, whatever the original size.
    for (w, h) in [(4032, 3024), (8000, 8000), (1568, 3000)] {
        let t = image_tokens(w, h);
        assert!((1_500..=IMAGE_MAX_TOKENS).contains(&t), "{w}x{h}: {t}");
    }
    // A banner is cut to the long edge: 1568 × 15.
    assert_eq!(image_tokens(10_000, 100), 32);
    assert_eq!(image_tokens(0, 10), 0);
}

#[test]
fn a_request_with_a_200_kb_image_is_a_thousand_tokens_not_fifty_thousand() {
    let body = request(
        "image",
        "image/png",
        &png(1024, 768, 200_000),
        "What is this?",
    );
    let est = u64::from(input_tokens(&body));
    let text = 60; // the JSON around the image, a quarter of its 200 bytes
    let rule = image_tokens(1024, 768);
    assert_eq!(rule, 1049);
    assert!((rule..=rule + text).contains(&est), "{est}");
    assert!(
        body.len() / 4 > 60_000,
        "the old estimate: {}",
        body.len() / 4
    );
}

#[test]
fn a_5_mb_photo_or_pdf_fits_under_a_30_000_token_limit() {
    let photo = request(
        "image",
        "image/jpeg",
        &jpeg(4032, 3024, 5 << 20),
        "Describe.",
    );
    assert!(photo.len() > 5 << 20);
    let est = input_tokens(&photo);
    assert!((1_500..=1_700).contains(&est), "{est}");
    let doc = request(
        "document",
        "application/pdf",
        &pdf(8, 600_000),
        "Summarize.",
    );
    assert!(doc.len() > 5 << 20);
    let est = u64::from(input_tokens(&doc));
    let pages = 8 * PDF_TOKENS_PER_PAGE;
    assert!((pages..pages + 60).contains(&est), "{est}");
}

#[test]
fn pdf_pages_are_counted_across_the_decoding_windows() {
    for (pages, filler) in [(1, 10), (3, 70_000), (40, 5_000), (12, 65_531)] {
        let data = STANDARD.encode(pdf(pages, filler));
        assert_eq!(
            pdf_pages(&data),
            pages as u64,
            "{pages} pages, {filler} filler"
        );
    }
    // Page objects hidden in compressed streams: the page tree's count.
    let hidden = STANDARD.encode(b"%PDF-1.7\n2 0 obj << /Type /Pages /Count 17 >> endobj\n");
    assert_eq!(pdf_pages(&hidden), 17);
    assert_eq!(pdf_pages(&STANDARD.encode(b"%PDF-1.7 nothing")), 0);
}

#[test]
fn only_what_the_model_reads_counts_and_non_json_keeps_the_quarter() {
    let text = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
    // 11 characters of text (4 tokens at 3.5 a token), and one message.
    assert_eq!(input_tokens(text), 4 + 4);
    // The envelope counts nothing, however long.
    let long_envelope = br#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64000,"metadata":{"user_id":"0123456789abcdef0123456789abcdef"},"stop_sequences":["\n\nHuman:"],"messages":[{"role":"user","content":"hello there"}]}"#;
    assert_eq!(input_tokens(long_envelope), 4 + 4);
    // Characters outside ASCII count one each: 4 of CJK, 1 of ASCII.
    let cjk = r#"{"messages":[{"role":"user","content":"你好世界!"}]}"#;
    assert_eq!(input_tokens(cjk.as_bytes()), 4 + 1 + 4);
    let odd = b"base64 but not JSON at all";
    assert_eq!(input_tokens(odd), odd.len().div_ceil(4) as u32);
    // Other base64 content counts as a quarter of what it decodes to.
    let plain = request("document", "text/plain", &[b'a'; 4000], "x");
    let est = input_tokens(&plain);
    assert!((1_000..1_010).contains(&est), "{est}");
    // A plain-text document source is text.
    let doc = br#"{"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"twenty-one characters"}}]}]}"#;
    assert_eq!(input_tokens(doc), 6 + 4);
    // An unreadable image counts as the most an image can cost.
    let junk = request("image", "image/png", b"junk", "x");
    let est = u64::from(input_tokens(&junk));
    assert!(
        (IMAGE_MAX_TOKENS..IMAGE_MAX_TOKENS + 10).contains(&est),
        "{est}"
    );
    // An image as a `data:` URL (the OpenAI-compatible path's form).
    let url = format!(
        "data:image/png;base64,{}",
        STANDARD.encode(png(1000, 1000, 50_000))
    );
    let chat = serde_json::json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
    ]}]});
    let est = u64::from(input_tokens(chat.to_string().as_bytes()));
    assert_eq!(est, image_tokens(1000, 1000) + 4);
}

#[test]
fn a_body_nested_beyond_the_parsers_limit_falls_back_to_the_quarter() {
    let deep = format!("{}\"base64\"{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(input_tokens(deep.as_bytes()), deep.len().div_ceil(4) as u32);
}
