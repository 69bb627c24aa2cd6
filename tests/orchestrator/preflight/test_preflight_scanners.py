"""The Ruby and JavaScript scanners: what is code and what is not, class structure, visibility, and linear time."""

from __future__ import annotations


import pytest

from orchestrator.preflight import javascript, ruby
from orchestrator.preflight.packages import gemfile_gems, importmap, lockfile_gems, package_json_dependencies


def methods(source: str) -> dict[str, list[tuple[str, bool, bool]]]:
    """class -> [(method, public, singleton)]."""
    outline = ruby.outline(ruby.tokenize(source), ())
    return {cls.name: [(m.name, m.public, m.singleton) for m in cls.methods] for cls in outline.classes}


def test_visibility_sections_inline_modifiers_and_symbols_after_the_fact() -> None:
    source = """\
class ChatChannel < ApplicationCable::Channel
  def subscribed; stream_from "chat"; end
  def speak(data) = broadcast(data)
  def self.register(token)
  end
  class << self
    def lookup(token); end
  end
  private def helper; end
  def appear; end
  def later; end
  private :later
  protected
  def guarded; end
  private
  def hidden; end
  public
  def visible; end
end
"""
    assert methods(source) == {"ChatChannel": [
        ("subscribed", True, False), ("speak", True, False), ("register", True, True), ("lookup", True, True),
        ("helper", False, False), ("appear", True, False), ("later", False, False), ("guarded", False, False),
        ("hidden", False, False), ("visible", True, False),
    ]}


def test_keywords_in_strings_comments_heredocs_and_modifiers_do_not_open_blocks() -> None:
    source = '''\
module ApplicationCable
  class Channel < ActionCable::Channel::Base
    # def commented; end
    def one
      text = "def x; end if do"
      sql = <<~SQL
        SELECT * FROM t WHERE a = 'end'
        def not_a_method
      SQL
      return unless text
      x = if text then 1 else 2 end
      items.each do |item| item end
      raise "stop" if false
      %w[def end class].each { |w| w }
      text =~ /end|def/
      while false do end
    end
=begin
    def in_block_comment; end
=end
    def two = :end
  end
end
'''
    outline = ruby.outline(ruby.tokenize(source), ())
    assert [(cls.name, cls.superclass, cls.scope) for cls in outline.classes] == [
        ("ApplicationCable::Channel", "ActionCable::Channel::Base", ("ApplicationCable",))]
    assert [m.name for m in outline.classes[0].methods] == ["one", "two"]


def test_calls_know_their_class_method_receiver_arguments_and_blocks() -> None:
    source = """\
class OutputChannel < ApplicationCable::Channel
  def subscribed
    stream_from "out_#{params[:user_id]}" do |message|
      transmit message
    end
    stream_from("plain", ->(m) { m })
  end

  def run
    Open3.capture2("ls")
    `uptime`
  end
end
"""
    outline = ruby.outline(ruby.tokenize(source), ("stream_from", "capture2", "`"))
    calls = [(c.name, c.receiver, c.line, c.owner, c.method, c.block) for c in outline.calls]
    assert calls == [
        ("stream_from", None, 3, "OutputChannel", "subscribed", True),
        ("stream_from", None, 6, "OutputChannel", "subscribed", True),
        ("capture2", "Open3", 10, "OutputChannel", "run", False),
        ("`", None, 11, "OutputChannel", "run", False),
    ]
    first = outline.calls[0].arguments[0][0]
    assert (first.pieces, first.interpolations) == (("out_", ""), ("params[:user_id]",))


HOSTILE_RUBY = {  # constructs left open, each repeated: a scanner that backtracks on them takes quadratic time
    "interpolation": '"#{', "parenthesis": "(", "word list": "%w[", "slash": "/", "heredoc": "<<~X ", "class": "class A\n",
}


@pytest.mark.parametrize("construct", HOSTILE_RUBY)
def test_ruby_scanner_takes_adversarial_input_to_its_end(construct: str) -> None:
    """Bounded in time by the test timeout; how the time grows with the input is measured by
    bench/preflight_scanners.py (linear: bench/results/preflight-scanners.md)."""
    source = HOSTILE_RUBY[construct] * 20_000 + "\nstream_from 'after'\n"
    tokens = ruby.tokenize(source)
    assert tokens, construct
    outline = ruby.outline(tokens, ("stream_from",))
    last_line = source.count("\n") + 1
    assert all(1 <= token.line <= last_line for token in tokens)
    assert len(outline.calls) <= 1
    assert len(outline.classes) <= ruby.MAX_SCOPE_DEPTH


def test_classes_nested_past_the_outline_s_depth_are_not_outlined_and_their_ends_still_balance() -> None:
    nested = "".join(f"class C{depth}\n" for depth in range(40)) + "end\n" * 40 + "class After < ApplicationCable::Channel\nend\n"
    names = [cls.name for cls in ruby.outline(ruby.tokenize(nested), ()).classes]
    assert len(names) == ruby.MAX_SCOPE_DEPTH + 1 and names[-1] == "After"
    assert names[0] == "::".join(f"C{depth}" for depth in range(ruby.MAX_SCOPE_DEPTH))


def test_javascript_scanner_ignores_comments_and_strings_and_tells_subscriptions_from_sockets() -> None:
    source = """\
import consumer from "channels/consumer"
// this.perform("commented")
const text = "subscription.perform('in a string')"
const chat = consumer.subscriptions.create({
  channel: "ChatChannel", room: 1
}, {
  speak(message) { return this.perform("speak", { message }) },
  ping() { this.send({ ping: 1 }) }
})
chat.send({ hello: 1 })
this.ws.send(JSON.stringify({ type: "subscribe", stream: "x" }))
request.send()
const pattern = /perform\\(/g
const tpl = `${chat.perform("inside")}`
"""
    client = javascript.analyse(javascript.tokenize(source))
    assert client.imports == ("channels/consumer",)
    assert client.subscriptions == (javascript.Subscription("ChatChannel", 4),)
    assert [(m.call, m.line) for m in client.messages] == [("this.perform", 7), ("this.send", 8), ("chat.send", 10)]


def test_coffeescript_perform_without_parentheses() -> None:
    source = 'App.room = App.cable.subscriptions.create "RoomChannel",\n  speak: (message) ->\n    @perform \'speak\', message: message  # a comment with perform(\n'
    client = javascript.analyse(javascript.tokenize(source, coffee=True), coffee=True)
    assert client.subscriptions == (javascript.Subscription("RoomChannel", 1),)
    assert [(m.call, m.line) for m in client.messages] == [("this.perform", 3)]


def test_dependency_files() -> None:
    gemfile = 'source "https://rubygems.org"\ngem "rails"\n# gem "kredis"\ngroup :development do\n  gem("sidekiq", "~> 7")\nend\n'
    assert gemfile_gems(gemfile) == {"rails": 2, "sidekiq": 5}
    lock = "GEM\n  remote: https://rubygems.org/\n  specs:\n    turbo_cable (1.0.2)\n      rails (>= 7)\n\nDEPENDENCIES\n  turbo_cable (~> 1.0)\n"
    assert lockfile_gems(lock) == {"turbo_cable": 4}
    package = '{\n  "scripts": {"test": "vitest"},\n  "dependencies": {\n    "@rails/actioncable": "^8.0"\n  },\n  "devDependencies": {"vitest": "^3"}\n}\n'
    assert package_json_dependencies(package) == {"@rails/actioncable": 4, "vitest": 6}
    pins = importmap('pin "application"\npin "@rails/actioncable", to: "actioncable.esm.js"\n'
                     'pin_all_from "app/javascript/lib", under: "helpers"\npin_all_from "app/javascript/channels"\n')
    assert pins.pins == {"application": 1, "@rails/actioncable": 2}
    assert pins.directories == {"helpers": "app/javascript/lib", "channels": "app/javascript/channels"}
