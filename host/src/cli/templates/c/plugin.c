// {{name}}: a pagewright extractor in C (world pagewright:plugin/extractor-plugin@0.2.0). Returns the
// page's title and how many elements match the selector in params (`{"selector": "..."}`, default
// "h1"), with the first one's text.
//
// WIT in C (wit-bindgen's bindings, `extractor_plugin.h`): a `result<T, error>` function returns
// true and fills `ret`, or false and fills `err`; strings are {ptr, len} and not NUL-terminated;
// what you are given is yours to free. printf and fprintf(stderr, ...) reach the server's log.
#include "extractor_plugin.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef exports_pagewright_plugin_extractor_error_t plugin_error_t;

// ---- a growable string --------------------------------------------------------------------------
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
static void put_str(buf_t *b, const char *s) { put(b, s, strlen(s)); }
static void put_json_string(buf_t *b, const uint8_t *s, size_t n) {
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    char esc[8];
    if (s[i] == '"' || s[i] == '\\') { esc[0] = '\\'; esc[1] = (char)s[i]; put(b, esc, 2); }
    else if (s[i] < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", s[i]); put(b, esc, 6); }
    else put(b, (const char *)&s[i], 1);
  }
  put(b, "\"", 1);
}

static bool invalid_input(plugin_error_t *err, const char *message) {
  err->tag = PAGEWRIGHT_PLUGIN_TYPES_ERROR_INVALID_INPUT;
  extractor_plugin_string_dup(&err->val.invalid_input, message);
  return false;
}

// ---- params: {} or {"selector": "<a string without escapes>"} ------------------------------------
static const char *skip_space(const char *s, const char *end) {
  while (s < end && strchr(" \t\r\n", *s)) s++;
  return s;
}
// On success *selector is a malloc'ed string, or NULL for the default.
static bool parse_params(const extractor_plugin_string_t *params, char **selector, plugin_error_t *err) {
  const char *s = (const char *)params->ptr, *end = s + params->len;
  *selector = NULL;
  s = skip_space(s, end);
  if (s == end) return true;
  if (*s++ != '{') return invalid_input(err, "params must be a JSON object");
  s = skip_space(s, end);
  if (s < end && *s == '}') return true;
  static const char key[] = "\"selector\"";
  if ((size_t)(end - s) < sizeof key - 1 || memcmp(s, key, sizeof key - 1) != 0)
    return invalid_input(err, "params may only have `selector`");
  s = skip_space(s + sizeof key - 1, end);
  if (s == end || *s++ != ':') return invalid_input(err, "params are not valid JSON");
  s = skip_space(s, end);
  if (s == end || *s++ != '"') return invalid_input(err, "`selector` must be a string");
  const char *start = s;
  while (s < end && *s != '"' && *s != '\\') s++;
  if (s == end || *s != '"') return invalid_input(err, "`selector` must be a string without escapes");
  size_t len = (size_t)(s - start);
  s = skip_space(s + 1, end);
  if (s == end || *s != '}') return invalid_input(err, "params may only have `selector`");
  *selector = malloc(len + 1);
  memcpy(*selector, start, len);
  (*selector)[len] = 0;
  return true;
}

static bool extract(pagewright_plugin_page_borrow_page_t page, const extractor_plugin_string_t *params,
                    exports_pagewright_plugin_extractor_output_t *ret, plugin_error_t *err) {
  char *chosen = NULL;
  if (!parse_params(params, &chosen, err)) return false;
  const char *selector = chosen ? chosen : "h1";
  printf("counting %s\n", selector);
  fflush(stdout);

  bool ok = false;
  extractor_plugin_string_t expression, title = {0}, sel;
  pagewright_plugin_page_list_element_t elements = {0};
  uint32_t count = 0;
  extractor_plugin_string_set(&expression, "document.title");
  extractor_plugin_string_set(&sel, selector);
  extractor_plugin_list_string_t no_attributes = {NULL, 0};
  // Page errors are passed on as they are: the caller gets the host's answer for them.
  if (pagewright_plugin_page_method_page_evaluate(page, &expression, &title, err) &&
      pagewright_plugin_page_method_page_count(page, &sel, &count, err) &&
      pagewright_plugin_page_method_page_query(page, &sel, &no_attributes, &elements, err)) {
    buf_t out = {0};
    char number[16];
    put_str(&out, "{\"title\":");
    put(&out, (const char *)title.ptr, title.len);  // evaluate answers JSON text
    put_str(&out, ",\"selector\":");
    put_json_string(&out, (const uint8_t *)selector, strlen(selector));
    snprintf(number, sizeof number, "%u", count);
    put_str(&out, ",\"count\":");
    put_str(&out, number);
    put_str(&out, ",\"first\":");
    if (elements.len > 0) put_json_string(&out, elements.ptr[0].text.ptr, elements.ptr[0].text.len);
    else put_str(&out, "null");
    put_str(&out, "}");
    ret->tag = PAGEWRIGHT_PLUGIN_TYPES_OUTPUT_JSON;
    ret->val.json.ptr = (uint8_t *)out.p;  // freed by the bindings after the call returns
    ret->val.json.len = out.len;
    ok = true;
  }
  extractor_plugin_string_free(&title);
  pagewright_plugin_page_list_element_free(&elements);
  free(chosen);
  return ok;
}

bool exports_pagewright_plugin_extractor_extract(exports_pagewright_plugin_extractor_borrow_page_t page,
                                                 extractor_plugin_string_t *params,
                                                 exports_pagewright_plugin_extractor_output_t *ret,
                                                 plugin_error_t *err) {
  bool ok = extract(page, params, ret, err);
  extractor_plugin_string_free(params);           // params are ours to free
  pagewright_plugin_page_page_drop_borrow(page);  // C has no automatic drop of borrows
  return ok;
}
