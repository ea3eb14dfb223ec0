//! PDF documents after Chromium has printed them: the document information a job asks for, and
//! several printed pages merged into one document. Chromium writes neither: it sets only the page's
//! title and its own name and dates, and prints one page per call.

use std::collections::BTreeMap;

use lopdf::{Dictionary, Document, Object, ObjectId, StringFormat};

use crate::job::options::{PdfMetadata, pdf_date};

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF could not be read or written: {0}")]
    Document(#[from] lopdf::Error),
    #[error("metadata: {0}")]
    Metadata(String),
}

/// Sets what `metadata` gives in the document information of `pdf`, keeping Chromium's entries
/// for the rest.
pub fn set_metadata(pdf: &[u8], metadata: &PdfMetadata) -> Result<Vec<u8>, PdfError> {
    let mut document = Document::load_mem(pdf)?;
    let info = match document.trailer.get(b"Info").and_then(Object::as_reference) {
        Ok(id) => id,
        Err(_) => {
            let id = document.add_object(Dictionary::new());
            document.trailer.set("Info", id);
            id
        }
    };
    let info = document.get_dictionary_mut(info)?;
    let texts = [
        ("Title", &metadata.title),
        ("Author", &metadata.author),
        ("Subject", &metadata.subject),
        ("Creator", &metadata.creator),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            info.set(key, text_string(value));
        }
    }
    if !metadata.keywords.is_empty() {
        info.set("Keywords", text_string(&metadata.keywords.join(", ")));
    }
    for (key, date) in [
        ("CreationDate", &metadata.creation_date),
        ("ModDate", &metadata.modification_date),
    ] {
        if let Some(date) = date {
            let date = pdf_date(date).map_err(PdfError::Metadata)?;
            info.set(key, Object::string_literal(date));
        }
    }
    save(document)
}

/// One document with the pages of `pdfs`, in order. The sources' outlines and structure trees are
/// dropped: each described its own page numbers.
pub fn merge(pdfs: &[Vec<u8>]) -> Result<Vec<u8>, PdfError> {
    let mut merged = Document::with_version("1.7");
    let mut pages: Vec<ObjectId> = Vec::new();
    let mut next_id = 1;
    for pdf in pdfs {
        let mut document = Document::load_mem(pdf)?;
        document.renumber_objects_with(next_id);
        next_id = document.max_id + 1;
        let source_pages: Vec<ObjectId> = document.get_pages().into_values().collect();
        for &page in &source_pages {
            inherit_page_attributes(&mut document, page)?;
        }
        pages.extend(source_pages);
        for (id, object) in document.objects {
            // The page tree and catalog are rebuilt below; the rest keeps its (new) numbers.
            if !matches!(object.type_name(), Ok(b"Catalog" | b"Pages")) {
                merged.objects.insert(id, object);
            }
        }
    }
    merged.max_id = next_id - 1;
    let tree = merged.new_object_id();
    for &page in &pages {
        merged.get_dictionary_mut(page)?.set("Parent", tree);
    }
    let count = i64::try_from(pages.len()).unwrap_or(i64::MAX);
    let mut tree_dictionary = Dictionary::new();
    tree_dictionary.set("Type", Object::Name(b"Pages".to_vec()));
    tree_dictionary.set(
        "Kids",
        pages
            .iter()
            .map(|&page| Object::Reference(page))
            .collect::<Vec<_>>(),
    );
    tree_dictionary.set("Count", count);
    merged
        .objects
        .insert(tree, Object::Dictionary(tree_dictionary));
    let mut catalog = Dictionary::new();
    catalog.set("Type", Object::Name(b"Catalog".to_vec()));
    catalog.set("Pages", tree);
    let catalog = merged.add_object(catalog);
    merged.trailer.set("Root", catalog);
    // What only the dropped catalogs referred to (outlines, structure trees).
    merged.prune_objects();
    save(merged)
}

/// Copies onto `page` the attributes it inherits from its page-tree ancestors, which the merge
/// drops.
fn inherit_page_attributes(document: &mut Document, page: ObjectId) -> Result<(), PdfError> {
    const INHERITABLE: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];
    let mut inherited: BTreeMap<&[u8], Object> = BTreeMap::new();
    let mut parent = document
        .get_dictionary(page)?
        .get(b"Parent")
        .and_then(Object::as_reference)
        .ok();
    // A page tree is shallow; the bound stops a malformed one that loops.
    for _ in 0..64 {
        let Some(id) = parent else { break };
        let node = document.get_dictionary(id)?;
        for key in INHERITABLE {
            if let Ok(value) = node.get(key) {
                inherited.entry(key).or_insert_with(|| value.clone());
            }
        }
        parent = node.get(b"Parent").and_then(Object::as_reference).ok();
    }
    let page = document.get_dictionary_mut(page)?;
    for (key, value) in inherited {
        if !page.has(key) {
            page.set(key, value);
        }
    }
    Ok(())
}

/// A PDF text string: as it is when it is printable ASCII, else UTF-16 with its byte-order mark.
fn text_string(text: &str) -> Object {
    if text.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        Object::string_literal(text)
    } else {
        let mut bytes = vec![0xfe, 0xff];
        bytes.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        Object::String(bytes, StringFormat::Hexadecimal)
    }
}

fn save(mut document: Document) -> Result<Vec<u8>, PdfError> {
    let mut bytes = Vec::new();
    document.save_to(&mut bytes).map_err(lopdf::Error::from)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF with a title, as Chromium writes the parts that matter here.
    fn one_page(title: &str) -> Vec<u8> {
        let mut document = Document::with_version("1.4");
        let tree = document.new_object_id();
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", tree);
        let page = document.add_object(page);
        let mut pages = Dictionary::new();
        pages.set("Type", Object::Name(b"Pages".to_vec()));
        pages.set("Kids", vec![Object::Reference(page)]);
        pages.set("Count", 1);
        pages.set("MediaBox", vec![0.into(), 0.into(), 612.into(), 792.into()]);
        document.objects.insert(tree, Object::Dictionary(pages));
        let mut catalog = Dictionary::new();
        catalog.set("Type", Object::Name(b"Catalog".to_vec()));
        catalog.set("Pages", tree);
        let catalog = document.add_object(catalog);
        document.trailer.set("Root", catalog);
        let mut info = Dictionary::new();
        info.set("Title", Object::string_literal(title));
        info.set("Producer", Object::string_literal("Skia/PDF"));
        let info = document.add_object(info);
        document.trailer.set("Info", info);
        save(document).expect("the test PDF saves")
    }

    fn info(pdf: &[u8]) -> Dictionary {
        let document = Document::load_mem(pdf).expect("the PDF loads");
        let id = document
            .trailer
            .get(b"Info")
            .and_then(Object::as_reference)
            .expect("an Info dictionary");
        document.get_dictionary(id).expect("Info").clone()
    }

    #[test]
    fn metadata_replaces_what_it_gives_and_keeps_the_rest() {
        let metadata = PdfMetadata {
            author: Some("Ada".into()),
            subject: Some("Überblick".into()),
            keywords: vec!["a".into(), "b".into()],
            creation_date: Some("2026-12-05T10:00:00Z".into()),
            ..PdfMetadata::default()
        };
        let pdf = set_metadata(&one_page("Chromium's title"), &metadata).expect("metadata set");
        let info = info(&pdf);
        let text = |key: &[u8]| {
            info.get(key)
                .and_then(Object::as_str)
                .map(<[u8]>::to_vec)
                .expect("the entry is a string")
        };
        assert_eq!(text(b"Title"), b"Chromium's title");
        assert_eq!(text(b"Author"), b"Ada");
        assert_eq!(text(b"Keywords"), b"a, b");
        assert_eq!(text(b"CreationDate"), b"D:20261205100000Z");
        assert_eq!(text(b"Producer"), b"Skia/PDF");
        let subject = text(b"Subject");
        assert_eq!(&subject[..2], &[0xfe, 0xff], "UTF-16 with its mark");
        let units: Vec<u16> = subject[2..]
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).expect("UTF-16"), "Überblick");
    }

    #[test]
    fn merge_keeps_every_page_in_order_with_inherited_sizes() {
        let merged =
            merge(&[one_page("one"), one_page("two"), one_page("three")]).expect("the PDFs merge");
        let document = Document::load_mem(&merged).expect("the merged PDF loads");
        let pages = document.get_pages();
        assert_eq!(pages.len(), 3);
        for id in pages.values() {
            let page = document.get_dictionary(*id).expect("a page");
            assert!(page.has(b"MediaBox"), "the size moved onto the page");
        }
    }

    #[test]
    fn a_damaged_pdf_is_an_error() {
        assert!(merge(&[b"%PDF-1.4 not really".to_vec()]).is_err());
        assert!(set_metadata(b"nothing", &PdfMetadata::default()).is_err());
    }
}
