// pagewright extractor plugin in C (world pagewright:plugin/extractor-plugin@0.1.0).
// Returns {"title": ..., "heading": ...}; params: {"heading": "<selector>"} (default "h1").
// Unknown params fields -> error::invalid-input (HTTP 400).
#include "extractor_plugin.h"
#include <stdlib.h>
#include <string.h>

// ---- a tiny growable buffer -------------------------------------------------------------
typedef struct { char *p; size_t len, cap; } buf_t;
static void put(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }
static void put_json_string(buf_t *b, const uint8_t *s, size_t n) {
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    char esc[8];
    if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = c; put(b, esc, 2); }
    else if (c < 0x20) {
      static const char hex[] = "0123456789abcdef";
      memcpy(esc, "\\u00", 4); esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; put(b, esc, 6);
    }
    else put(b, (const char *)&c, 1);
  }
  put(b, "\"", 1);
}

// ---- minimal JSON reading: enough to check a params object ------------------------------
typedef struct { const char *s, *end; } cur_t;
static void ws(cur_t *c) { while (c->s < c->end && strchr(" \t\r\n", *c->s)) c->s++; }
// Reads a JSON string (without unescaping \u sequences) into out (malloc'ed); returns 0 on error.
static int read_string(cur_t *c, char **out) {
  if (c->s >= c->end || *c->s != '"') return 0;
  c->s++;
  buf_t b = {0};
  put(&b, "", 0);
  while (c->s < c->end && *c->s != '"') {
    if (*c->s == '\\') {
      c->s++;
      if (c->s >= c->end) { free(b.p); return 0; }
      char ch = *c->s;
      char m = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch == 'r' ? '\r' : ch == 'b' ? '\b' : ch == 'f' ? '\f' : ch;
      if (ch == 'u') { put(&b, "\\u", 2); c->s++; continue; }
      put(&b, &m, 1);
      c->s++;
    } else {
      put(&b, c->s, 1);
      c->s++;
    }
  }
  if (c->s >= c->end) { free(b.p); return 0; }
  c->s++;
  *out = b.p;
  return 1;
}
static bool fail(exports_pagewright_plugin_extractor_error_t *err, uint8_t tag, const char *msg) {
  err->tag = tag;
  extractor_plugin_string_dup(&err->val.invalid_input, msg);  // every case holds a string
  return false;
}

// Parses params; on success *heading is a malloc'ed selector or NULL.
static bool parse_params(const extractor_plugin_string_t *params, char **heading,
                         exports_pagewright_plugin_extractor_error_t *err) {
  cur_t c = { (const char *)params->ptr, (const char *)params->ptr + params->len };
  *heading = NULL;
  ws(&c);
  if (c.s == c.end) return true;  // empty params: defaults
  if (*c.s != '{') return fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, "params must be a JSON object");
  c.s++; ws(&c);
  if (c.s < c.end && *c.s == '}') return true;
  for (;;) {
    char *key;
    ws(&c);
    if (!read_string(&c, &key)) return fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, "params are not valid JSON");
    ws(&c);
    if (c.s >= c.end || *c.s != ':') { free(key); return fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, "params are not valid JSON"); }
    c.s++; ws(&c);
    if (strcmp(key, "heading") == 0) {
      free(key);
      free(*heading);
      if (!read_string(&c, heading)) return fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, "`heading` must be a string");
    } else {
      buf_t msg = {0};
      puts_(&msg, "unknown field `"); puts_(&msg, key); puts_(&msg, "` in params");
      free(key);
      free(*heading); *heading = NULL;
      fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, msg.p);
      free(msg.p);
      return false;
    }
    ws(&c);
    if (c.s < c.end && *c.s == ',') { c.s++; continue; }
    if (c.s < c.end && *c.s == '}') return true;
    free(*heading); *heading = NULL;
    return fail(err, PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT, "params are not valid JSON");
  }
}

static bool extract(pagewright_plugin_page_borrow_page_t page, extractor_plugin_string_t *params,
                    exports_pagewright_plugin_extractor_output_t *ret,
                    exports_pagewright_plugin_extractor_error_t *err) {
  char *heading_sel = NULL;
  if (!parse_params(params, &heading_sel, err)) return false;
  const char *selector = heading_sel ? heading_sel : "h1";

  buf_t line = {0};
  puts_(&line, "looking for "); puts_(&line, selector);
  extractor_plugin_string_t msg = { (uint8_t *)line.p, line.len };
  pagewright_plugin_log_log(PAGEWRIGHT_PLUGIN_LOG_LEVEL_INFO, &msg);
  free(line.p);

  // evaluate: the value comes back as JSON text, so it can be embedded as it is.
  extractor_plugin_string_t expr, title;
  extractor_plugin_string_set(&expr, "document.title");
  if (!pagewright_plugin_page_method_page_evaluate(page, &expr, &title, err)) {  // page errors pass on
    free(heading_sel);
    return false;
  }

  extractor_plugin_string_t sel;
  extractor_plugin_string_set(&sel, selector);
  extractor_plugin_list_string_t attrs = { NULL, 0 };
  pagewright_plugin_page_list_element_t elements;
  if (!pagewright_plugin_page_method_page_query(page, &sel, &attrs, &elements, err)) {
    extractor_plugin_string_free(&title);
    free(heading_sel);
    return false;
  }

  buf_t out = {0};
  puts_(&out, "{\"title\":");
  put(&out, (const char *)title.ptr, title.len);
  puts_(&out, ",\"heading\":");
  if (elements.len > 0) put_json_string(&out, elements.ptr[0].text.ptr, elements.ptr[0].text.len);
  else puts_(&out, "null");
  puts_(&out, "}");

  extractor_plugin_string_free(&title);
  pagewright_plugin_page_list_element_free(&elements);
  free(heading_sel);

  ret->tag = PAGEWRIGHT_PLUGIN_TYPES_OUTPUT_JSON;
  ret->val.json.ptr = (uint8_t *)out.p;  // freed by the generated post-return
  ret->val.json.len = out.len;
  return true;
}

bool exports_pagewright_plugin_extractor_extract(exports_pagewright_plugin_extractor_borrow_page_t page,
                                                 extractor_plugin_string_t *params,
                                                 exports_pagewright_plugin_extractor_output_t *ret,
                                                 exports_pagewright_plugin_extractor_error_t *err) {
  bool ok = extract(page, params, ret, err);
  extractor_plugin_string_free(params);          // params are ours to free
  pagewright_plugin_page_page_drop_borrow(page); // borrows must be dropped before returning (no autodrop in C)
  return ok;
}
