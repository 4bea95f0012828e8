"""Load the shipped question bank once: only into an empty bank, so admin edits stay."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from game.models import Question


class Command(BaseCommand):
    help = "Load the question bank fixture if the bank is empty (use --force to reload it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="reload even if questions exist")

    def handle(self, *args: Any, **options: Any) -> None:
        count = Question.objects.count()
        if count and not options["force"]:
            self.stdout.write(f"question bank has {count} questions: left as it is")
            return
        call_command("loaddata", "questions", verbosity=0)
        self.stdout.write(f"question bank loaded: {Question.objects.count()} questions")
