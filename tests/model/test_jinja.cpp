// The Jinja subset (model/jinja.hpp): the language as jinja2 renders it with HF's settings,
// provenance of the output's bytes, clear errors naming line and column, limits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/jinja.hpp"

namespace sluice::jinja {
namespace {

std::vector<ChatMessage> chat(std::initializer_list<std::pair<const char*, const char*>> m) {
  std::vector<ChatMessage> out;
  for (const auto& [r, c] : m) out.push_back({r, c});
  return out;
}

std::string render(const std::string& src, const std::vector<ChatMessage>& messages = chat({{"user", "Hi"}}), bool agp = true) {
  return Template(src).render_chat(messages, agp, "<s>", "</s>").text;
}

std::string error_of(const std::string& src, const std::vector<ChatMessage>& messages = chat({{"user", "Hi"}})) {
  try {
    render(src, messages);
  } catch (const JinjaError& e) {
    return e.what();
  }
  return "(no error)";
}

// The bytes of `r` the template wrote, with '.' for bytes from data.
std::string markup_mask(const RenderedChat& r) {
  std::string mask(r.text.size(), '.');
  for (const auto& [off, len] : r.markup)
    for (std::size_t k = off; k < off + len; ++k) mask[k] = r.text[k];
  return mask;
}

TEST(Jinja, WhitespaceControlAsHfSetsIt) {
  // trim_blocks eats the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("{% if true %}\n    a\n    {% endif %}\nb"), "    a\nb");
  EXPECT_EQ(render("x  {{- ' y ' -}}  z"), "x y z");
  EXPECT_EQ(render("a\n  {%- if true %} b {% endif -%}\n c"), "a b c");
  EXPECT_EQ(render("{# comment #}\nx{#- c -#}  y"), "xy");
  EXPECT_EQ(render("  {%+ if true %}a{% endif %}"), "  a");
  EXPECT_EQ(render("{{ 'a' }}\n{{ 'b' }}"), "a\nb");  // no trim after }}
}

TEST(Jinja, LoopsAndLoopVariables) {
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "01TrueFalse3;12FalseFalse3;23FalseTrue3;");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}"), "a=1,b=2,");
  EXPECT_EQ(render("{% for x in range_missing %}a{% endfor %}."), ".");  // undefined iterates as empty
  EXPECT_EQ(render("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "13");
}

TEST(Jinja, ScopesAndNamespaces) {
  // A set inside a loop stays there; a namespace carries state out.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [5] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [5, 6] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"), "12");
  EXPECT_EQ(render("{% if true %}{% set y = 'in if' %}{% endif %}{{ y }}"), "in if");
}

TEST(Jinja, Expressions) {
  EXPECT_EQ(render("{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages | length }}"), "user Hi 1");
  EXPECT_EQ(render("{{ [1, 2, 3, 4][1:] }} {{ 'hello'[::-1] }} {{ 'abc'[-1] }} {{ [1,2,3][:-1] }}"), "[2, 3, 4] olleh c [1, 2]");
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 ~ 'a' }}"), "7 3 -4 1 3.5 1024 1a");
  EXPECT_EQ(render("{{ 'a' if false else 'b' }}{{ 'c' if true }}{{ 'd' if false }}"), "bc");
  EXPECT_EQ(render("{{ 'x' in 'xyz' }} {{ 2 not in [1] }} {{ 'k' in {'k': 1} }} {{ not none }}"), "True True True True");
  EXPECT_EQ(render("{{ none }} {{ true }} {{ {'a': [1, 'b']} }} {{ 1.0 }} {{ 0.1 + 0.2 }}"), "None True {'a': [1, 'b']} 1.0 0.30000000000000004");
  EXPECT_EQ(render("{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ 3 is odd }} {{ x is not defined }}"),
            "False True True True True True");
  EXPECT_EQ(render("{{ messages[0].tool_calls is defined }}{{ not messages[0].tool_calls }}"), "FalseTrue");
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 1 and 0 }} {{ 0 or 'z' }}"), "True True 0 z");
}

TEST(Jinja, FiltersAndMethods) {
  EXPECT_EQ(render("[{{ '  a b \\n' | trim }}] {{ 'Ab' | upper }}{{ 'Ab' | lower }} {{ [1, 2] | join(', ') }} {{ 'abc' | length }}"),
            "[a b] ABab 1, 2 3");
  EXPECT_EQ(render("{{ {'a': [1, 'x\"y'], 'b': none} | tojson }}"), "{\"a\": [1, \"x\\\"y\"], \"b\": null}");
  EXPECT_EQ(render("{{ {'a': 1} | tojson(indent=2) }}"), "{\n  \"a\": 1\n}");
  EXPECT_EQ(render("{{ missing | default('d') }} {{ '' | default('e', true) }} {{ [3, 4] | first }}{{ [3, 4] | last }} {{ 5 | string }}"),
            "d e 34 5");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ ' x y '.split() }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }}"),
            "['a', 'b', '', 'c'] ['x', 'y'] True True");
  EXPECT_EQ(render("{{ '--a--'.strip('-') }} {{ 'aXbX'.replace('X', '.') }} {{ {'k': 'v'}.get('k') }} {{ {'k': 'v'}.get('z', 0) }}"),
            "a a.b. v 0");
  EXPECT_EQ(render("{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ [1, 2, 3] | reject('equalto', 2) | list }}"),
            "1 [1, 3]");
  EXPECT_EQ(render("{{ messages | map(attribute='role') | join }} {{ {'a': 1} | items | list }}"), "user [['a', 1]]");
}

TEST(Jinja, Macros) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}"),
            "Hi a! Hi b?");
}

TEST(Jinja, ProvenanceMarksOnlyTheTemplatesBytes) {
  const Template t("{{- '<|im_start|>' + message_role_missing | default('') }}{% for m in messages %}<|im_start|>{{ m.role }}\n"
                   "{{ m.content | trim }}{{ '<|im_end|>' }}\n{% endfor %}{{ bos_token }}");
  const RenderedChat r = t.render_chat(chat({{"user", "  <|im_end|> data  "}}), true, "<s>", "</s>");
  EXPECT_EQ(r.text, "<|im_start|><|im_start|>user\n<|im_end|> data<|im_end|>\n<s>");
  EXPECT_EQ(markup_mask(r), "<|im_start|><|im_start|>....\n...............<|im_end|>\n<s>");
  // Concatenation keeps each piece's provenance; ~ too.
  const RenderedChat c = Template("{{ '[' ~ messages[0].content ~ ']' }}").render_chat(chat({{"user", "ab"}}), true, "", "");
  EXPECT_EQ(markup_mask(c), "[..]");
}

TEST(Jinja, QwenDefaultSystemPrompt) {
  const std::string qwen =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
      "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
      "{%- endif %}{%- for message in messages %}{%- if message.role != 'system' or not loop.first %}"
      "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
      "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  const std::vector<ChatMessage> m = chat({{"user", "Hi"}});
  const std::optional<RenderedChat> r = render_model_template(qwen, m, true, "", "<|im_end|>");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->text,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(qwen, chat({{"system", "S"}, {"user", "U"}}), false), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(Jinja, ErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("a\n{% if %}"), "line 2, column 7: expected an expression, found '%}'");
  EXPECT_EQ(error_of("{{ 'x' | nosuchfilter }}"), "line 1, column 10: unknown filter 'nosuchfilter'");
  EXPECT_EQ(error_of("\n\n  {{ missing.attr }}"), "line 3, column 13: 'missing' is undefined (reading .attr)");
  EXPECT_EQ(error_of("{% for x in [1] %}"), "line 1, column 19: missing {% endfor %}");
  EXPECT_EQ(error_of("{{ 'unterminated }}"), "line 1, column 4: unterminated string literal");
  EXPECT_EQ(error_of("{% block b %}{% endblock %}"), "line 1, column 4: unsupported tag 'block'");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "line 1, column 8: unsupported operand types for +: 'str' and 'int'");
  EXPECT_EQ(error_of("{{ 1 // 0 }}"), "line 1, column 6: division by zero");
}

TEST(Jinja, RaiseExceptionIsTheTemplatesRefusal) {
  try {
    render("{{ raise_exception('roles must alternate') }}");
    FAIL();
  } catch (const JinjaError& e) {
    EXPECT_TRUE(e.raised());
    EXPECT_STREQ(e.what(), "roles must alternate");
  }
  const std::vector<ChatMessage> m = chat({{"user", "Hi"}});
  EXPECT_THROW(render_model_template("{{ raise_exception('no') }}", m, true, "", ""), std::invalid_argument);
  std::string why;
  EXPECT_FALSE(render_model_template("{% block x %}", m, true, "", "", &why));
  EXPECT_EQ(why, "line 1, column 4: unsupported tag 'block'");
}

TEST(Jinja, LimitsBoundWork) {
  std::string deep(500, '(');
  EXPECT_NE(error_of("{{ " + deep + "1" + std::string(500, ')') + " }}").find("nested more than 200 deep"), std::string::npos);
  std::string nested;
  for (int k = 0; k < 300; ++k) nested += "{% if true %}";
  EXPECT_NE(error_of(nested).find("nested more than"), std::string::npos);
  const std::string loops = "{% set l = [0,0,0,0,0,0,0,0,0,0] %}{% for a in l %}{% for b in l %}{% for c in l %}{% for d in l %}"
                            "{% for e in l %}{% for f in l %}x{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
  EXPECT_NE(error_of(loops).find("evaluation steps"), std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").find("nested more than 64 deep"), std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 100000000 }}").find("too large"), std::string::npos);
}

}  // namespace
}  // namespace sluice::jinja
