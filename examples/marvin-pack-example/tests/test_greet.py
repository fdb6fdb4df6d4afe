"""The pack's own tests, with Marvin's test harness (``marvin.testing``)."""

from marvin_pack_example import commands


def test_greets(marvin_bot):
    bot = marvin_bot(commands, user="ada@example.com", groups=["developers"])
    replies = bot.send("greet Ada")
    assert replies.reactions == ["accepted", "succeeded"]
    assert "Hello, Ada! (from demo01)" in replies.text


def test_a_bad_name_is_refused_with_usage(marvin_bot):
    bot = marvin_bot(commands)
    replies = bot.send("greet <script>")
    assert "example.greet" in replies.text and "succeeded" not in replies.reactions


def test_help_shows_the_command(marvin_bot):
    bot = marvin_bot(commands)
    assert "greet <name>" in bot.send("help greet").text
